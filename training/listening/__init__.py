"""Listening-test kit: the paper's perceptual test (multi-stimulus ratings of Production Value, Clarity and
Excitement) as a self-contained static web page, and the statistics to read its results.

* :mod:`.stimuli`: the ``fxmix eval --save-audio`` folder layout, excerpt choice, loudness matching;
* :mod:`.build`: ``fxmix listen build`` (anonymised, shuffled trials + the page + the researcher's key);
* :mod:`.server`: ``fxmix listen serve`` (serves the page on localhost and stores posted results);
* :mod:`.analysis`: ``fxmix listen analyze`` (post-screening, descriptive statistics, Friedman, Wilcoxon-Holm).
"""
