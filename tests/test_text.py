"""Reading text: one newline rule for every command (LF and CRLF files read as the same lines)."""
import gzip

from rescorer.cli import main
from rescorer.text import read_lines, strip_newline


def test_lf_and_crlf_files_read_as_the_same_lines(tmp_path):
    lines = ["le chat est bleu", "", "  deux espaces  ", "a\rb"]   # a carriage return inside a line is kept
    lf, crlf, gz = tmp_path / "lf.txt", tmp_path / "crlf.txt", tmp_path / "crlf.txt.gz"
    lf.write_bytes("".join(x + "\n" for x in lines).encode())
    crlf.write_bytes("".join(x + "\r\n" for x in lines).encode())
    with gzip.open(gz, "wb") as f:
        f.write(crlf.read_bytes())
    assert read_lines(str(lf)) == read_lines(str(crlf)) == read_lines(str(gz)) == lines
    assert strip_newline("no newline") == "no newline" and strip_newline("a\r\n") == "a"


def test_a_command_reads_a_crlf_hypothesis_as_its_lf_copy(tmp_path, capsys):
    ref = tmp_path / "ref.txt"
    ref.write_text("le chat est sur la table .\nla maison est bleue .\n")
    hyp_lf, hyp_crlf = tmp_path / "lf.txt", tmp_path / "crlf.txt"
    hyp_lf.write_text("le chat est sur une table .\nla maison bleue .\n")
    hyp_crlf.write_bytes(hyp_lf.read_bytes().replace(b"\n", b"\r\n"))
    outs = []
    for hyp in (hyp_lf, hyp_crlf):
        assert main(["evaluate", "--input", str(hyp), "--ref", str(ref)]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and "BLEU" in outs[0]
