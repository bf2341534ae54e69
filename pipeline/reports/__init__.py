"""The report page (``datasets/report/index.html``): what a person opens to look at a run.

- :mod:`pipeline.reports.page` writes the HTML page and its ``assets/`` folder;
- :mod:`pipeline.reports.plots` draws the data figures (from the manifests) and the training curves;
- :mod:`pipeline.reports.media` turns every sample into a small MP3 (MIDI through FluidSynth);
- :mod:`pipeline.reports.references` holds the published reference each family is compared with.

The Markdown report (``report.md``, for ``git diff``) stays in :mod:`pipeline.report`.
"""
