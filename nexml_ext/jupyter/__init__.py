"""Jupyter surfaces of nexml-ext: IPython magics and ipywidgets, thin over the Workspace."""
