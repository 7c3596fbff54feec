"""Tableau deliverables: the Hyper extract, its refresher, the workbooks and their publication."""
