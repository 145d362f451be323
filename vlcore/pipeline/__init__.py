"""Stage entry points: glue between a rule's params (plain config dicts) and the library.

Each function here is what one ``scripts/<rule>.py`` calls; it can be called (and tested)
without Snakemake.
"""
