"""Unit tests of scripts/bench_docs.py on a small JSON sample (run by scripts/test:
python3 -m unittest discover -s scripts -p 'test_*.py')."""

import json
import os
import tempfile
import unittest

import bench_docs

SAMPLE = {
    "date": "2026-11-30T00:30:00+00:00",
    "machine": {"cores": 2, "kernel": "6.18", "load_average": [1.5, 2.25, 3.0]},
    "quick": False,
    "benchmarks": {
        "tcp-fileserv": {
            "status": "ran",
            "command": ["scripts/bench-tcp-fileserv"],
            "tables": [{
                "columns": ["measure", "value", "goal"],
                "rows": [["1024 MiB download, tcp-fileserv", "2000 MB/s", ""],
                         ["same file, nc", "1000 MB/s", "tcp-fileserv >= nc: 2.00x"]],
            }],
        },
        "ftp-server": {"status": "skipped", "missing": ["vsftpd"]},
        "ftp-vs-tcp": {
            "status": "ran",
            "command": [os.path.join(bench_docs.ROOT, "target/release/ftp-vs-tcp"), "--quiet"],
            "tables": [],
            "results": {
                "sizes": [
                    {"protocol": "tcp", "size": 1024, "mb_per_s": 10.0, "ratio_to_tcp": 1.0},
                    {"protocol": "ftp", "size": 1024, "mb_per_s": 2.5, "ratio_to_tcp": 4.0},
                    {"protocol": "ftps", "size": 1024, "mb_per_s": 1.0, "ratio_to_tcp": 10.0},
                    {"protocol": "tcp", "size": 1 << 30, "mb_per_s": 2000.0, "ratio_to_tcp": 1.0},
                    {"protocol": "ftp", "size": 1 << 30, "mb_per_s": 1900.0,
                     "ratio_to_tcp": 1.0526},
                ],
                "scenarios": [
                    {"scenario": "5 x 1 KiB, one session", "protocol": "ftp", "median_s": 0.002,
                     "ratio_to_tcp": 3.0},
                ],
            },
        },
    },
}

DOC = """# Benchmarks

Hand-written text stays.

<!-- bench:tcp-fileserv:begin -->
old tcp-fileserv table
<!-- bench:tcp-fileserv:end -->

Between the sections.

<!-- bench:ftp-server:begin -->
old ftp-server table
<!-- bench:ftp-server:end -->

<!-- bench:ftp-vs-tcp:begin -->
<!-- bench:ftp-vs-tcp:end -->
"""


class RewriteTest(unittest.TestCase):
    def test_sections_of_benchmarks_that_ran_are_replaced_and_the_rest_kept(self):
        text, updated, kept = bench_docs.rewrite(DOC, SAMPLE)
        self.assertEqual(updated, ["tcp-fileserv", "ftp-vs-tcp"])
        self.assertEqual(kept, ["ftp-server"])
        self.assertNotIn("old tcp-fileserv table", text)
        self.assertIn("old ftp-server table", text)
        for outside in ["# Benchmarks\n", "Hand-written text stays.", "Between the sections."]:
            self.assertIn(outside, text)
        # The benchmark's own table, ratio column included, with when and how loaded.
        self.assertIn("| same file, nc | 1000 MB/s | tcp-fileserv >= nc: 2.00x |", text)
        self.assertIn("load average 1.50, 2.25, 3.00", text)
        self.assertIn("`scripts/bench-tcp-fileserv`", text)
        self.assertIn("`target/release/ftp-vs-tcp --quiet`", text, "paths below the checkout")
        # ftp-vs-tcp: each protocol's figure beside its ratio to TCP of the same run; a
        # protocol missing at a size is a dash, not a shifted column.
        self.assertIn("| size | TCP MB/s | FTP MB/s (time / TCP) | FTPS MB/s (time / TCP) |", text)
        self.assertIn("| 1 KiB | 10.0 | 2.5 (4.00x) | 1.0 (10.00x) |", text)
        self.assertIn("| 1 GiB | 2000.0 | 1900.0 (1.05x) | - |", text)
        self.assertIn("| 5 x 1 KiB, one session | FTP | 2.00 ms | 3.00x |", text)
        # Markers stay, so the next run finds the sections again, and a rerun is stable.
        self.assertEqual(text.count("<!-- bench:"), DOC.count("<!-- bench:"))
        self.assertEqual(bench_docs.rewrite(text, SAMPLE)[0], text)

    def test_a_pipe_in_a_cell_does_not_break_the_table(self):
        t = bench_docs.md_table(["a", "b"], [["x | y", "z"]])
        self.assertEqual(t.splitlines()[2], "| x \\| y | z |")

    def test_write_rewrites_the_file_in_place(self):
        with tempfile.TemporaryDirectory() as d:
            j, doc = os.path.join(d, "bench.json"), os.path.join(d, "benchmarks.md")
            with open(j, "w") as f:
                json.dump(SAMPLE, f)
            with open(doc, "w") as f:
                f.write(DOC)
            bench_docs.write(j, doc)
            with open(doc) as f:
                self.assertIn("2000 MB/s", f.read())


if __name__ == "__main__":
    unittest.main()
