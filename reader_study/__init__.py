"""Blinded reader study of real vs synthetic bone scans: packets, an offline browser viewer, scoring.

``packet`` makes one self-contained HTML file per reader and a separate answer key; ``responses`` reads what
the viewer exports; ``scoring`` computes accuracy and agreement; ``simulate`` plays readers for planning;
``report`` writes Markdown and figures. Nothing here imports torch.
"""
