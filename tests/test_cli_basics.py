import subprocess
import sys

from momentseg.errors import MomentSegError


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "momentseg", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "version" in out.stdout


def test_error_message_is_one_line():
    err = MomentSegError("bad\nthing   happened")
    assert str(err) == "bad thing happened"
