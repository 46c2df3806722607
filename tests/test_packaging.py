"""
Tests for the packaging: the twistd plugins are found from the installed
package, after C{pip install .} and after C{pip install -e .}.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.support import LOOPBACK_LISTEN, onceAcrossRunners

PROJECT = Path(__file__).resolve().parent.parent

_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".venv-newest-twisted", "build", "dist", "*.egg-info", "__pycache__", "_trial_temp*", "dropin.cache", "*.pid",
    # What npm and the benchmark installed and built here (5,000 files).
    "node_modules", ".build",
)


@onceAcrossRunners
class PluginDiscoveryTests(SynchronousTestCase):
    """
    A fresh virtual environment, the project installed into it two ways, and
    C{twistd} run from elsewhere, where the source tree is not on the path.
    """

    def setUp(self) -> None:
        here = Path(self.mktemp()).resolve()
        self.source = here / "source"
        shutil.copytree(PROJECT, self.source, ignore=_NOT_SOURCE)
        self.elsewhere = here / "elsewhere"
        self.elsewhere.mkdir()
        self.venv = here / "venv"
        self.command(sys.executable, "-m", "venv", str(self.venv))
        # The versions under test here; pip takes them from its cache.
        self.pip(
            "install",
            f"twisted[tls,http2]=={version('twisted')}",
            f"treq=={version('treq')}",
            f"hyperlink=={version('hyperlink')}",
            # The mock's scripts need it (chunkgen imports them at start).
            f"regex=={version('regex')}",
            "setuptools>=70.1",
        )

    def command(self, *argv: str) -> str:
        done = subprocess.run(
            argv, cwd=self.elsewhere, capture_output=True, text=True, timeout=300, env=self.env()
        )
        self.assertEqual(done.returncode, 0, f"{argv}:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        return env

    def pip(self, *args: str) -> str:
        return self.command(str(self.venv / "bin" / "python"), "-m", "pip", "-q", *args)

    def twistdHelp(self) -> str:
        return self.command(str(self.venv / "bin" / "twistd"), "--help")

    def assertPluginsWork(self) -> None:
        """
        C{twistd --help} lists both plugins, and C{twistd -n chunkgen}
        starts and listens.
        """
        listed = self.twistdHelp()
        self.assertIn("chunkgen", listed)
        self.assertIn("chunkproxy", listed)
        twistd = subprocess.Popen(
            [str(self.venv / "bin" / "twistd"), "-n", "--pidfile=", "chunkgen", "--listen", LOOPBACK_LISTEN],
            cwd=self.elsewhere,
            env=dict(self.env(), PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert twistd.stdout is not None
            seen = []
            for line in twistd.stdout:
                seen.append(line)
                if "chunkgen listening on http://127.0.0.1:" in line:
                    break
            else:
                self.fail("chunkgen did not start:\n" + "".join(seen))
        finally:
            twistd.terminate()
            twistd.wait(timeout=10)

    def test_installAndEditableInstall(self) -> None:
        """
        The plugins are found after C{pip install .}, gone after uninstalling
        (so the check can tell), and found again after C{pip install -e .}.
        """
        self.pip("install", "--no-deps", "--no-build-isolation", str(self.source))
        self.assertPluginsWork()
        self.pip("uninstall", "-y", "twisted-stream")
        listed = self.twistdHelp()
        self.assertNotIn("chunkgen", listed)
        self.assertNotIn("chunkproxy", listed)
        self.pip("install", "--no-deps", "--no-build-isolation", "-e", str(self.source))
        self.assertPluginsWork()


class LicenseTests(SynchronousTestCase):
    def test_licenseFileMatches(self) -> None:
        """
        The LICENSE file is the license the package declares.
        """
        from importlib.metadata import metadata

        self.assertEqual(metadata("twisted-stream")["License"], "MIT")
        self.assertEqual((PROJECT / "LICENSE").read_text().splitlines()[0], "MIT License")


@onceAcrossRunners
class BootstrapTests(SynchronousTestCase):
    def test_firstInstallSaysWhat(self) -> None:
        """
        The first run of the scripts' bootstrap, into a new virtual
        environment, says what it installs before the wait, and nothing
        else: no pip warnings. (A real install from the package index,
        taken from pip's cache where it can.)
        """
        venv = Path(self.mktemp()).resolve() / "venv"
        done = subprocess.run(
            ["bash", "-c", f"source {PROJECT / 'scripts' / 'bootstrap.sh'}"],
            env=dict(os.environ, VENV=str(venv)),
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(
            done.stderr,
            f"installing twisted-stream into {venv}: Twisted, treq, httptools and what they need (once; about 20 s) ...\n",
        )
        self.assertEqual(done.stdout, "")
        self.assertTrue((venv / "bin" / "twistd").exists())
