"""Debian's headless Chromium, driven through chromedriver by selenium, as the dashboard's person-like tests
use it: a fresh profile, downloads into a given directory, and trust in exactly the local stack's server
certificates (by their public keys), nothing else."""

from __future__ import annotations

import base64
import hashlib
import shutil
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Known to work on these machines: no sandbox (root), no GPU, and no background traffic to the internet.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1440,1000")


class ChromiumUnavailable(Exception):
    """Chromium or chromedriver is missing or cannot start here; str() says which and why."""


def spki_hash(url: str) -> str:
    """The base64 SHA-256 of the public key of the certificate a https server presents (Chromium's
    --ignore-certificate-errors-spki-list trusts exactly those keys)."""
    parts = urlsplit(url)
    pem = ssl.get_server_certificate((parts.hostname or "127.0.0.1", parts.port or 443), timeout=10)
    key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def start(profile: Path, downloads: Path, trusted_urls: list[str]) -> webdriver.Chrome:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(binary) is None:
            raise ChromiumUnavailable(f"{binary} is not installed (Debian packages chromium, chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_argument("--ignore-certificate-errors-spki-list=" + ",".join(sorted({spki_hash(u)
                                                                                    for u in trusted_urls})))
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False,
                                              "download.directory_upgrade": True})
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except WebDriverException as error:
        raise ChromiumUnavailable(f"chromium did not start: {error.msg}") from error
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver
