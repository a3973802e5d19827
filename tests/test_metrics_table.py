"""Table 1 writer (bold best, arrows, backend footnote) and direction-aware diff."""

from __future__ import annotations

import json

from metrics import table
from metrics.__main__ import main
from metrics.diff import diff

RECORDS = [
    {"method": "GT", "dataset": "test", "metrics": {"psnr": float("inf"), "ssim": 1.0, "m_lmd": 0.0,
                                                   "fd[rgb-pool8]": 0.0, "lse_c[syncnet:trained-here@ab12cd34]": 9.0}},
    {"method": "Still", "dataset": "test", "metrics": {"psnr": 20.0, "ssim": 0.7, "m_lmd": 3.0,
                                                      "fd[rgb-pool8]": 5.0, "lse_c[syncnet:trained-here@ab12cd34]": 0.5}},
    {"method": "EDTalk-A", "dataset": "test", "metrics": {"psnr": 25.0, "ssim": 0.8, "m_lmd": 2.0,
                                                         "fd[rgb-pool8]": 7.0, "lse_c[syncnet:trained-here@ab12cd34]": 6.0}},
]


def test_markdown_layout_bold_best_and_arrows():
    md = table.render(RECORDS, "md", 2)
    lines = md.splitlines()
    assert lines[0] == "| Method | PSNR↑ | SSIM↑ | M-LMD↓ | FD[rgb-pool8]↓ | Sync_conf↑ |"
    assert lines[2] == "| GT | inf | 1.00 | 0.00 | 0.00 | 9.00 |"          # reference row: never bold
    assert lines[3] == "| Still | 20.00 | 0.70 | 3.00 | **5.00** | 0.50 |"
    assert lines[4] == "| EDTalk-A | **25.00** | **0.80** | **2.00** | 7.00 | **6.00** |"
    assert "FID" not in md                                                    # no bare FID for a stand-in
    assert "syncnet:trained-here@ab12cd34 (GT, Still, EDTalk-A)" in md


def test_a_value_that_rounds_to_zero_is_shown_without_a_sign():
    noisy = [dict(r, metrics={**r["metrics"], "fd[rgb-pool8]": -3e-9 if r["method"] == "GT" else r["metrics"]["fd[rgb-pool8]"]})
             for r in RECORDS]
    assert "| GT | inf | 1.00 | 0.00 | 0.00 | 9.00 |" in table.render(noisy, "md", 2)
    negative = [dict(r, metrics={**r["metrics"], "m_lmd": -0.5}) for r in RECORDS[:1]]
    assert "-0.50" in table.render(negative, "md", 2)                       # a real negative keeps it


def test_csv_and_tex():
    csv = table.render(RECORDS, "csv").splitlines()
    assert csv[0] == "Method,PSNR↑,SSIM↑,M-LMD↓,FD[rgb-pool8]↓,Sync_conf↑"
    assert csv[2].startswith("Still,20.0,0.7,3.0,5.0,0.5")
    tex = table.render(RECORDS, "tex", 2)
    assert r"PSNR$\uparrow$" in tex and r"\textbf{25.00}" in tex and r"M-LMD$\downarrow$" in tex
    assert "Backends" in tex


def test_real_fid_gets_the_fid_header_and_datasets_prefix():
    recs = [{"method": "A", "dataset": "HDTF", "metrics": {"fid": 10.0}},
            {"method": "A", "dataset": "MEAD", "metrics": {"fid": 12.0}},
            {"method": "B", "dataset": "MEAD", "metrics": {"fid": 11.0}}]
    head = table.render(recs, "md").splitlines()[0]
    assert head == "| Method | HDTF FID↓ | MEAD FID↓ |"
    assert table.render(recs, "md", 0).splitlines()[3] == "| B | – | **11** |"


def test_diff_is_direction_aware():
    got = {d.metric: d.verdict for d in diff(
        {"psnr": 20.0, "m_lmd": 3.0, "lse_c[x]": 5.0, "fid": 4.0, "ssim": 0.5},
        {"psnr": 19.0, "m_lmd": 2.0, "lse_c[x]": 6.0, "fid": 4.0, "ssim": 0.6})}
    assert got == {"psnr": "worse", "m_lmd": "better", "lse_c[x]": "better", "fid": "same", "ssim": "better"}


def test_cli_table_and_diff(tmp_path, capsys):
    paths = []
    for r in RECORDS:
        p = tmp_path / f"{r['method']}.json"
        p.write_text(json.dumps(r))
        paths.append(str(p))
    assert main(["table", *paths, "--format", "md"]) == 0
    assert "**25.000**" in capsys.readouterr().out
    assert main(["diff", paths[1], paths[2]]) == 0
    out = capsys.readouterr().out
    assert "m_lmd" in out and "better" in out and "worse" in out
