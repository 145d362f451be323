"""The figures and tables of the HTML report (``snakemake --report report.html``).

Each module makes one kind of report item from files the workflow already wrote; the rules
in ``rules/report.smk`` call them and mark their outputs with ``report()``:

- :mod:`vlcore.report.cleaning`: the clean report of an experiment as a bar chart;
- :mod:`vlcore.report.samples`: test images with generated captions and references, and
  VQA questions with the model's answer beside the ten human answers (HTML grids);
- :mod:`vlcore.report.tables`: the top-level metric tables (``results/*.json``) as HTML;
- :mod:`vlcore.report.compare`: the experiments of a run side by side
  (``results/compare.md`` / ``.json``);
- :mod:`vlcore.report.browser`: open a report in headless Chromium and check what renders.

Per-rule runtimes are not made here: Snakemake's report has them (its "Statistics" view,
from each job's start and end time).
"""
