"""Tableau deliverables: the Hyper extract, the workbooks and their publication."""
