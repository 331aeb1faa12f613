"""HTTP/1.1 on the wire, with raw sockets: what uvicorn does for SGLang and clients rely on
(keep-alive, pipelining, chunked request bodies, Expect: 100-continue, HEAD, bad requests,
and a client that goes away mid-request)."""

from __future__ import annotations

import json
import socket
import time

GEN = b'{"text": "hello", "sampling_params": {"max_new_tokens": 3}}'


def connect(sim) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", sim.port), timeout=10)
    return sock


def read_response(sock: socket.socket, buf: bytearray) -> tuple[str, dict, bytes]:
    """One response off the socket (content-length or chunked); leftover bytes stay in buf."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, f"connection closed before a response: {bytes(buf)!r}"
        buf += data
    end = buf.index(b"\r\n\r\n")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[:end + 4]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name] = value.strip()
    if lines[0].split(" ")[1].startswith("1"):  # an interim response has no body
        return lines[0], headers, b""
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            data = sock.recv(65536)
            assert data
            buf += data
        body = bytes(buf[:n])
        del buf[:n]
        return lines[0], headers, body
    assert headers.get("transfer-encoding") == "chunked", headers
    body = b""
    while True:
        while b"\r\n" not in buf:
            data = sock.recv(65536)
            assert data
            buf += data
        eol = buf.index(b"\r\n")
        size = int(bytes(buf[:eol]), 16)
        while len(buf) < eol + 2 + size + 2:
            data = sock.recv(65536)
            assert data
            buf += data
        body += bytes(buf[eol + 2:eol + 2 + size])
        del buf[:eol + 2 + size + 2]
        if size == 0:
            return lines[0], headers, body


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_keep_alive_and_pipelined_requests(shared_sim):
    with connect(shared_sim) as sock:
        buf = bytearray()
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%b" % (len(GEN), GEN))
        status, headers, body = read_response(sock, buf)
        assert status == "HTTP/1.1 200 OK"
        assert headers["server"] == "uvicorn" and headers["date"].endswith("GMT")
        assert json.loads(body)["data"][0]["id"] == "tiny-chat"
        status, _, body = read_response(sock, buf)
        assert status == "HTTP/1.1 200 OK"
        assert json.loads(body)["meta_info"]["completion_tokens"] == 3
        # Still open: a third request on the same connection.
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buf)[0] == "HTTP/1.1 200 OK"


def test_connection_close_and_http_1_0(shared_sim):
    with connect(shared_sim) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        _, headers, _ = read_response(sock, bytearray())
        assert headers["connection"] == "close"
        assert closed_by_server(sock)
    with connect(shared_sim) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.0\r\n\r\n")
        status, _, body = read_response(sock, bytearray())
        assert status.endswith("200 OK") and json.loads(body)["object"] == "list"
        assert closed_by_server(sock)


def test_chunked_request_body(shared_sim):
    with connect(shared_sim) as sock:
        half = len(GEN) // 2
        sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"%x\r\n%b\r\n%x\r\n%b\r\n0\r\n\r\n"
                     % (half, GEN[:half], len(GEN) - half, GEN[half:]))
        status, _, body = read_response(sock, bytearray())
        assert status == "HTTP/1.1 200 OK", body
        assert json.loads(body)["meta_info"]["completion_tokens"] == 3


def test_expect_100_continue(shared_sim):
    with connect(shared_sim) as sock:
        sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(GEN))
        buf = bytearray()
        status, _, _ = read_response(sock, buf)  # the interim response comes first
        assert status == "HTTP/1.1 100 Continue"
        sock.sendall(GEN)
        status, _, body = read_response(sock, buf)
        assert status == "HTTP/1.1 200 OK" and json.loads(body)["text"]


def test_head_has_headers_only(shared_sim):
    with connect(shared_sim) as sock:
        sock.sendall(b"HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        end = buf.index(b"\r\n\r\n")
        head = bytes(buf[:end]).decode()
        del buf[:end + 4]
        assert head.startswith("HTTP/1.1 200 OK") and "content-length: " in head
        # No body follows the HEAD answer: the next bytes are the GET's response.
        status, _, body = read_response(sock, buf)
        assert status == "HTTP/1.1 200 OK" and json.loads(body)["object"] == "list"


def test_bad_request_is_400_and_closes(shared_sim):
    for raw in (b"NONSENSE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                b"POST /generate HTTP/1.1\r\nContent-Length: ten\r\n\r\n"):
        with connect(shared_sim) as sock:
            sock.sendall(raw)
            status, headers, body = read_response(sock, bytearray())
            assert status == "HTTP/1.1 400 Bad Request", raw
            assert body == b"Invalid HTTP request received." and headers["connection"] == "close"
            assert closed_by_server(sock)
    assert shared_sim.get("/v1/models").status_code == 200


def wait_idle(sim, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while sim.get("/v1/loads").json()["loads"][0]["num_running_reqs"]:
        assert time.monotonic() < deadline, "the request kept running after its client left"
        time.sleep(0.02)


def test_client_that_goes_away_is_aborted(sim_factory):
    # 400 tokens at 20 ms a step would run 8 s: a request that ends sooner was aborted.
    sim = sim_factory("--sim-load-seconds", "0", "--sim-warmup-seconds", "0",
                      "--sim-decode-ms", "20", "--sim-decode-ms-per-req", "0", "--enable-metrics")
    aborted = 'sglang:num_aborted_requests_total{model_name="sim/tiny-model"}'
    for stream in (True, False):
        body = json.dumps({"text": "long", "stream": stream,
                           "sampling_params": {"max_new_tokens": 400, "ignore_eos": True}})
        sock = connect(sim)
        sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b"
                     % (len(body), body.encode()))
        if stream:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        else:
            sim.wait_running()
        before = sim.metrics()[aborted]
        t0 = time.monotonic()
        sock.close()
        wait_idle(sim)
        assert time.monotonic() - t0 < 6
        assert sim.metrics()[aborted] == before + 1


def test_idle_keep_alive_connection_is_closed(shared_sim):
    # uvicorn closes a connection idle for 5 s (SGLang does not change it); load balancers
    # keep their idle upstream connections for less than that.
    with connect(shared_sim) as sock:
        buf = bytearray()
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buf)[0] == "HTTP/1.1 200 OK"
        time.sleep(1)
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buf)[0] == "HTTP/1.1 200 OK"
        t0 = time.monotonic()
        sock.settimeout(15)
        assert sock.recv(1) == b""
        assert 3 < time.monotonic() - t0 < 12


def test_http_1_0_stream_is_close_delimited(shared_sim):
    # HTTP/1.0 has no chunked coding: a stream to such a client ends with the connection.
    body = json.dumps({"text": "hello", "stream": True,
                       "sampling_params": {"max_new_tokens": 3}}).encode()
    with connect(shared_sim) as sock:
        sock.sendall(b"POST /generate HTTP/1.0\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
        raw = b""
        while data := sock.recv(65536):
            raw += data
    head, _, payload = raw.partition(b"\r\n\r\n")
    headers = head.decode("latin-1").lower()
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert "transfer-encoding" not in headers and "connection: close" in headers
    events = [e for e in payload.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["meta_info"]["completion_tokens"] == 3
