"""Evaluation: accuracy at every JPEG quality, selectors, rank statistics, quality metrics.

* :mod:`.predictors`: the :class:`Predictor` protocol (JPEG bytes -> logits) and :class:`OnnxPredictor`;
* :mod:`.study`: :func:`run_study` (images x settings x models, resumable, shardable);
* :mod:`.store`: the SQLite store of per-image results;
* :mod:`.selectors`: HRS / T1K / T5K / TTK;
* :mod:`.metrics`: PSNR, SSIM;
* :mod:`.report`: summary.json (schema documented there), CSV, Markdown, plots.
"""
