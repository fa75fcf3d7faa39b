"""HTTPS behind the bastion: the playground served over TLS on 127.0.0.1 with a certificate for an
internal name, signed by a private CA the tests generate, reached through real OpenSSH.

The server records the SNI name of every handshake and the Host header of every request, so the
tests see what the connector really sent. The records are compared with the app's own answer
through Flask's test client (no network, no DNS).
"""

import datetime
import ssl
import threading
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from conftest import tunnel_config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from werkzeug.serving import WSGIRequestHandler, make_server

import connector

_API_NAME = "api.internal.test"
_API_KEY = "https-test-api-key"
_PAGED_PATH = "/pagination/next_page_url?per_page=50"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str):
    """(private key, self-signed CA certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def make_server_certificate(ca_key, ca_certificate, dns_name: str):
    """(private key, certificate for `dns_name` only, signed by the CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_name))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate


def pem(certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # keep test output readable
        pass


class PlaygroundServer:
    """The playground app in a thread on 127.0.0.1, over TLS when given a context; it records the
    SNI names and Host headers it receives."""

    def __init__(self, app, tls_context: ssl.SSLContext | None = None):
        self.server_names = []
        self.hosts = []
        if tls_context is not None:
            tls_context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)

        def recording_app(environ, start_response):
            self.hosts.append(environ.get("HTTP_HOST"))
            return app(environ, start_response)

        self.server = make_server(
            "127.0.0.1",
            0,
            recording_app,
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=tls_context,
        )
        self.port = self.server.server_port
        # Named so that `no_leaks` (which looks for tunnel threads) does not count it.
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="playground-server", daemon=True
        )

    def start(self) -> "PlaygroundServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def ca():
    """(CA key, CA certificate) of the private CA that signs the API's certificate."""
    return make_ca("Internal Test CA")


@pytest.fixture(scope="module")
def playground_app():
    """The playground Flask app in this process, with a known API key (restored after)."""
    import fivetran_api_playground

    original = fivetran_api_playground.API_KEY
    fivetran_api_playground.API_KEY = _API_KEY
    yield fivetran_api_playground.app
    fivetran_api_playground.API_KEY = original


@pytest.fixture(scope="module")
def https_api(ca, playground_app, tmp_path_factory):
    """The playground over HTTPS, with a certificate for api.internal.test signed by `ca`."""
    key, certificate = make_server_certificate(*ca, _API_NAME)
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_text(pem(certificate))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server = PlaygroundServer(playground_app, context).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http_api(playground_app):
    """The same app over plain HTTP, to see the Host header sent without TLS."""
    server = PlaygroundServer(playground_app).start()
    yield server
    server.stop()


@pytest.fixture
def https_config(sshd, client_key, https_api, ca):
    """A configuration for the HTTPS API through `sshd`; keyword arguments override."""

    https = {
        "api_path": _PAGED_PATH,
        "api_scheme": "https",
        "api_hostname": _API_NAME,
        "api_ca_certificate": pem(ca[1]),
    }
    api = SimpleNamespace(port=https_api.port, api_key=_API_KEY)
    return lambda **overrides: tunnel_config(sshd, client_key, api, **{**https, **overrides})


def all_records_directly(app, path: str) -> dict:
    """Every record of a next_page_url-paginated path, asked of the app in-process, by id."""
    client = app.test_client()
    records = {}
    for _ in range(100):
        page = client.get(path, headers={"Authorization": f"apiKey {_API_KEY}"}).get_json()
        records.update({r["id"]: r for r in page["data"]})
        if not page.get("next_page_url"):
            return records
        next_url = urlsplit(page["next_page_url"])
        path = f"{next_url.path}?{next_url.query}"
    raise AssertionError("the playground never reached its last page")


def sync_error(configuration: dict) -> str:
    with pytest.raises(connector.SetupError) as raised:
        connector.update(configuration=configuration, state={})
    return str(raised.value)


@pytest.mark.integration
@pytest.mark.openssh
def test_https_sync_with_private_ca_upserts_every_page(
    https_config, https_api, playground_app, recorder, no_leaks
):
    del https_api.server_names[:], https_api.hosts[:]
    connector.update(configuration=https_config(), state={})
    upserted = {data["id"]: data for _, data in recorder.upserts}
    assert upserted == all_records_directly(playground_app, _PAGED_PATH)
    assert len(recorder.checkpoints) > 1  # next_page_url, built from our Host header, was followed
    # TLS and the virtual host saw the internal name, never the tunnel's 127.0.0.1.
    assert set(https_api.server_names) == {_API_NAME}
    assert len(https_api.hosts) == len(recorder.checkpoints)
    assert set(https_api.hosts) == {f"{_API_NAME}:{https_api.port}"}


@pytest.mark.integration
@pytest.mark.openssh
@pytest.mark.parametrize("ca_choice", ["system trust store", "another private CA"])
def test_https_without_the_signing_ca_names_api_ca_certificate(
    ca_choice, https_config, recorder, no_leaks
):
    ca_pem = "" if ca_choice == "system trust store" else pem(make_ca("Some Other CA")[1])
    message = sync_error(https_config(api_ca_certificate=ca_pem))
    assert "certificate verify failed" in message
    assert "set api_ca_certificate" in message
    assert "Verification is never turned off" in message
    assert not recorder.upserts


@pytest.mark.integration
@pytest.mark.openssh
@pytest.mark.parametrize("api_hostname", ["wrong.internal.test", ""])
def test_https_with_a_name_the_certificate_lacks_names_api_hostname(
    api_hostname, https_config, recorder, no_leaks
):
    message = sync_error(https_config(api_hostname=api_hostname))
    shown = api_hostname or "127.0.0.1"  # empty: remote_host is the name checked
    assert f"TLS to the API as '{shown}' failed" in message
    assert "set api_hostname" in message
    assert not recorder.upserts


@pytest.mark.integration
@pytest.mark.openssh
def test_unreadable_api_ca_certificate_fails_without_leaving_a_tunnel(
    https_config, recorder, no_leaks
):
    damaged = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    message = sync_error(https_config(api_ca_certificate=damaged))
    assert "'api_ca_certificate' is not a valid PEM certificate" in message


@pytest.mark.integration
@pytest.mark.openssh
def test_api_setup_test_over_https_passes_and_fails_like_a_sync(https_config, no_leaks):
    assert connector.check_api_through_tunnel(https_config()).failure is None
    failure = connector.check_api_through_tunnel(https_config(api_ca_certificate="")).failure
    assert "set api_ca_certificate" in failure


@pytest.mark.integration
@pytest.mark.openssh
def test_plain_http_sends_api_hostname_as_host_and_follows_its_next_pages(
    https_config, http_api, playground_app, recorder, no_leaks
):
    del http_api.hosts[:]
    connector.update(
        configuration=https_config(
            api_scheme="http", api_ca_certificate="", remote_port=str(http_api.port)
        ),
        state={},
    )
    upserted = {data["id"]: data for _, data in recorder.upserts}
    assert upserted == all_records_directly(playground_app, _PAGED_PATH)
    assert set(http_api.hosts) == {f"{_API_NAME}:{http_api.port}"}
