"""Layer 4, the learning pipeline: federated training on real data with any scheme.

Data sets and images (``data``, ``images``), deep features and their on-disk cache (``features``,
``feature_cache``), the elastic-net SGD trainer (``trainer``), the pipeline's configuration (``config``),
the pipeline itself (``pipeline``), its results files (``results``) and the settings of a run as one row
(``run_settings``, read by ``results`` and the report).

Layer rule: crypto <- backends <- schemes <- learning <- bench, deploy <- cli. Modules here may import
crypto, backends, schemes, ``dphe_bench.errors`` and ``dphe_bench.files``; never bench, deploy or the CLI.
"""
