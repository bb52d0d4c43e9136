"""Ways out of ClickHouse: datasets, legal exports, the archive and its restore.

Every export writes a directory of files with a ``manifest.json`` (``manifest``: sha256, size
and rows per file, and how the export was made) and records itself in the ``export_audit`` table
(``audit``). The tools reach ClickHouse through ``source`` (the embedded directory or a server).
"""
