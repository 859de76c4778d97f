"""What the dashboard shows, without the dashboard: plots, caches, tables and the app's state.

This package never imports gradio, so every view can be built and tested from plain Python;
app.py only wires these functions to components.
"""
