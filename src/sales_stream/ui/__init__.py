"""Notebook widgets (ipywidgets) that drive and display the pipeline."""
