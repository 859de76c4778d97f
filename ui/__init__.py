"""The dashboard's UI wiring, one module per tab (compare, hypersphere, roc, errors, about), and the
page that puts them together (page.py). Everything shown is computed by dfdet.viz's services.

A new panel or tab: a module with `build(ctx)` that creates its components inside the current
gr.Tabs and wires them to a service; add it to page.TABS.
"""
