"""Layer 5, benchmarking: measurements and the reports made from them.

The crypto sweep (``sweep``), single-operation throughput (``throughput``), the python-paillier baseline
(``baseline``), and the report: result tables (``report_data``), figures (``report_figures``) and the
Markdown report (``report``).

Layer rule: crypto <- backends <- schemes <- learning <- bench, deploy <- cli. Modules here may import
every layer below (crypto, backends, schemes, learning) and ``dphe_bench.errors`` / ``dphe_bench.files``;
never deploy (its sibling) or the CLI.
"""
