"""The Open Inference Protocol over gRPC (`onnx-engine serve --grpc-port`), through
tritonclient.grpc unmodified, against real `onnx-engine serve` processes on 127.0.0.1.

Each answer is compared with what the same server answers over HTTP (tritonclient.http), and for
the classifier, T5 and embeddings with the engine called in-process. Most servers are processes
of their own (SIGTERM, exit codes, the CLI's flags); the server's gRPC modules also load into
this process beside tritonclient.grpc (both have messages named ``inference.*``, ours in a
private descriptor pool: see onnx_engine/serving/grpc_proto), and one test serves tritonclient
from here. Every wait is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import filecmp
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tiny_rerankers
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import trustme
from google.protobuf import descriptor_pb2
from serve_support import (
    ServeProcess,
    metric_value,
    running_server,
    serve_process,
    stop_process,
    wait_until,
)
from tiny_token_classifiers import NER_TEXTS
from tritonclient.grpc import service_pb2 as triton_messages
from tritonclient.utils import InferenceServerException

import engine

reranker_factory = tiny_rerankers.reranker_factory  # the session fixture, shared
ROOT = Path(__file__).resolve().parent.parent
PROTO = Path("onnx_engine/serving/grpc_proto/grpc_predict_v2.proto")
DESCRIPTORS = PROTO.with_suffix(".desc")
API_KEY = "grpc-key-3f9a"
AUTH = {"authorization": f"Bearer {API_KEY}"}
TEXTS = ["a great movie", "the plot was dull and far too long", "ok", "héllo wörld 🙂", "x " * 40]
SOURCES = ["translate English to German: hello", "summarize: the cat sat on the mat", "hi"]
QUERY = "How do I bake bread at home?"
DOCUMENTS = ["Knead the dough and let it rise.", "The striker scored twice.", ""]
# Slow enough generation to hold a request in progress while the test acts on the server.
SLOW = {"max_new_tokens": 160, "num_beams": 6, "early_stopping": "never"}
HOLD = {"max_new_tokens": 500, "num_beams": 64, "early_stopping": "never"}
# Every task a tiny model serves: (model, BYTES inputs, request parameters).
CASES = {
    "classifier": ("clf", {"text": TEXTS}, {}),
    "classifier top_k pairs": ("clf", {"text": TEXTS[:2], "text_pair": TEXTS[2:4]},
                               {"top_k": 2, "function_to_apply": "sigmoid"}),
    "t5": ("t5", {"text": SOURCES}, {"max_new_tokens": 6, "num_beams": 2}),
    "embeddings": ("emb", {"text": TEXTS}, {}),
    "token classification": ("ner", {"text": list(NER_TEXTS)}, {}),
    "reranking": ("ce", {"query": [QUERY], "text": DOCUMENTS}, {}),
}


@contextlib.contextmanager
def serving(*args: str) -> Iterator[ServeProcess]:
    served = serve_process(*args, "--grpc-port", "0")
    try:
        yield served
    finally:
        stop_process(served.process)


@pytest.fixture(scope="module")
def artifacts(distilbert, t5_v1_1, tiny_embedder_factory, token_classifier_factory,
              reranker_factory) -> dict[str, Path]:
    return {"clf": distilbert.artifact, "t5": t5_v1_1.artifact,
            "emb": tiny_embedder_factory("mean").artifact,
            "ner": token_classifier_factory("bert-ner").artifact,
            "ce": reranker_factory("ce-bert").artifact}


@pytest.fixture(scope="module")
def server(artifacts):
    """Every task, default limits, no key."""
    with serving(*(f"{name}={path}" for name, path in artifacts.items())) as served:
        yield served


def _grpc(served: ServeProcess) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(served.grpc)


def _inputs(module, tensors: dict[str, list[str]]) -> list:
    inputs = []
    for name, values in tensors.items():
        tensor = module.InferInput(name, [len(values)], "BYTES")
        tensor.set_data_from_numpy(np.array(values, dtype=object))
        inputs.append(tensor)
    return inputs


def _code(error: InferenceServerException) -> str:
    return error.status()


@pytest.mark.parametrize("case", sorted(CASES))
def test_infer_answers_what_http_answers(server, case):
    model, tensors, parameters = CASES[case]
    http = httpclient.InferenceServerClient(server.url.split("//", 1)[1])
    names = [output["name"] for output in http.get_model_metadata(model)["outputs"]]
    ours = _grpc(server).infer(model, _inputs(grpcclient, tensors), parameters=parameters,
                               request_id="rq-7")
    theirs = http.infer(model, _inputs(httpclient, tensors), parameters=parameters,
                        outputs=[httpclient.InferRequestedOutput(n) for n in names])
    assert ours.get_response().id == "rq-7"
    assert [output.name for output in ours.get_response().outputs] == names
    for name in names:
        got, want = ours.as_numpy(name), theirs.as_numpy(name)
        assert got.shape == want.shape and got.dtype == want.dtype, name
        if got.dtype == object:
            assert got.tolist() == want.tolist(), name
        else:  # the same server, the same batch: the same numbers
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=name)


def test_classifier_t5_and_embeddings_equal_the_engine(server, artifacts):
    client = _grpc(server)
    clf, t5, emb = (engine.load(artifacts[name]) for name in ("clf", "t5", "emb"))
    logits = client.infer("clf", _inputs(grpcclient, {"text": TEXTS}),
                          outputs=[grpcclient.InferRequestedOutput("logits")])
    assert [output.name for output in logits.get_response().outputs] == ["logits"]
    np.testing.assert_allclose(logits.as_numpy("logits"), clf.logits(TEXTS), rtol=1e-5,
                               atol=1e-6)
    settings = {"max_new_tokens": 6, "num_beams": 2}
    generated = client.infer("t5", _inputs(grpcclient, {"text": SOURCES}), parameters=settings)
    assert [text.decode() for text in generated.as_numpy("generated_text")] == [
        sequence.text for sequence in t5.generate(SOURCES, **settings)]
    vectors = client.infer("emb", _inputs(grpcclient, {"text": TEXTS})).as_numpy("embedding")
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, emb.embed(TEXTS), rtol=1e-5, atol=1e-6)


def test_health_and_metadata_answer_what_http_answers(server, artifacts):
    client = _grpc(server)
    assert client.is_server_live() and client.is_server_ready()
    assert all(client.is_model_ready(name) for name in artifacts)
    http = httpx.get(f"{server.url}/v2", timeout=10).json()
    metadata = client.get_server_metadata()
    assert (metadata.name, metadata.version, list(metadata.extensions)) == (
        http["name"], http["version"], http["extensions"])
    for name in artifacts:
        want = httpx.get(f"{server.url}/v2/models/{name}", timeout=10).json()
        got = client.get_model_metadata(name)
        assert (got.name, list(got.versions), got.platform) == (
            want["name"], want["versions"], want["platform"])
        for side in ("inputs", "outputs"):
            assert [(t.name, t.datatype, list(t.shape)) for t in getattr(got, side)] == [
                (t["name"], t["datatype"], t["shape"]) for t in want[side]]


def _fp32_input(module) -> list:
    tensor = module.InferInput("text", [1], "FP32")
    tensor.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    return [tensor]


@pytest.mark.parametrize("model, inputs, options, code, fragment", [
    ("nope", {"text": ["a"]}, {}, grpc.StatusCode.NOT_FOUND, "No model named 'nope'"),
    ("clf", None, {}, grpc.StatusCode.INVALID_ARGUMENT, "datatype 'FP32'"),
    ("clf", {"txt": ["a"]}, {}, grpc.StatusCode.INVALID_ARGUMENT, "Unknown input(s) ['txt']"),
    ("clf", {"text": ["a"]}, {"outputs": ["nope"]}, grpc.StatusCode.INVALID_ARGUMENT,
     "Unknown output(s) ['nope']"),
    ("clf", {"text": ["a"]}, {"parameters": {"top_k": 0}}, grpc.StatusCode.INVALID_ARGUMENT,
     "top_k"),
    ("t5", {"text": ["a"]}, {"parameters": {"num_beams": "many"}},
     grpc.StatusCode.INVALID_ARGUMENT, "num_beams"),
], ids=["unknown model", "fp32 input", "unknown input", "unknown output", "bad top_k",
        "bad num_beams"])
def test_refusals_are_http_refusals_as_status_codes(server, model, inputs, options, code,
                                                    fragment):
    """The gRPC status of each refusal, with the very message HTTP answers."""
    http = httpclient.InferenceServerClient(server.url.split("//", 1)[1])
    outputs = options.get("outputs")
    with pytest.raises(InferenceServerException) as ours:
        _grpc(server).infer(
            model, _inputs(grpcclient, inputs) if inputs else _fp32_input(grpcclient),
            parameters=options.get("parameters"),
            outputs=[grpcclient.InferRequestedOutput(n) for n in outputs] if outputs else None)
    assert _code(ours.value) == str(code) and fragment in ours.value.message()
    http_inputs = _inputs(httpclient, inputs) if inputs else _fp32_input(httpclient)
    with pytest.raises(InferenceServerException) as theirs:
        http.infer(model, http_inputs, parameters=options.get("parameters"),
                   outputs=[httpclient.InferRequestedOutput(n) for n in outputs]
                   if outputs else None)
    assert theirs.value.message() == ours.value.message()


def test_unknown_model_readiness_and_metadata_are_not_found(server):
    client = _grpc(server)
    for call in (client.is_model_ready, client.get_model_metadata):
        with pytest.raises(InferenceServerException) as error:
            call("nope")
        assert _code(error.value) == str(grpc.StatusCode.NOT_FOUND)


def test_an_input_sent_twice_is_refused_alike(server):
    """Two tensors named "text" used to answer the last one only, on both listeners."""
    http = httpclient.InferenceServerClient(server.url.split("//", 1)[1])
    for client, module in ((_grpc(server), grpcclient), (http, httpclient)):
        twice = _inputs(module, {"text": ["a"]}) + _inputs(module, {"text": ["b"]})
        with pytest.raises(InferenceServerException) as error:
            client.infer("clf", twice)
        assert _code(error.value) in (str(grpc.StatusCode.INVALID_ARGUMENT), "422")
        assert "Input 'text' is sent twice" in error.value.message()


def test_model_versions_answer_alike_over_grpc_and_http(server):
    """The one version "1" (what metadata lists) answers everywhere, as no version does; any
    other is NOT_FOUND / 404 on both listeners (gRPC used to serve any, HTTP V2's versioned
    ready and metadata routes were missing, so tritonclient.http said version 1 is not ready)."""
    http = httpclient.InferenceServerClient(server.url.split("//", 1)[1])
    ours = _grpc(server)
    for client, module in ((ours, grpcclient), (http, httpclient)):
        assert client.is_model_ready("clf", "1")
        assert client.infer("clf", _inputs(module, {"text": ["a"]}), model_version="1")
        inputs = _inputs(module, {"text": ["a"]})
        for call, args in ((client.get_model_metadata, ("clf", "2")),
                           (client.infer, ("clf", inputs, "2"))):
            with pytest.raises(InferenceServerException) as error:
                call(*args)
            assert _code(error.value) in (str(grpc.StatusCode.NOT_FOUND), "404")
            assert "no version '2'" in error.value.message()
    assert not http.is_model_ready("clf", "2")  # a 404 (tritonclient.grpc raises NOT_FOUND)
    with pytest.raises(InferenceServerException) as error:
        ours.is_model_ready("clf", "2")
    assert _code(error.value) == str(grpc.StatusCode.NOT_FOUND)
    assert list(ours.get_model_metadata("clf", "1").versions) == ["1"]
    assert http.get_model_metadata("clf", "1")["versions"] == ["1"]


def test_api_key_overload_and_a_cancelled_call(artifacts):
    """The key as `authorization` metadata; over the concurrency limit RESOURCE_EXHAUSTED; a
    call the client cancels frees its slot and is not work lost at SIGTERM (exit 0)."""
    with serving(f"clf={artifacts['clf']}", f"t5={artifacts['t5']}", "--api-key", API_KEY,
                 "--max-concurrent-requests", "1") as served:
        client = _grpc(served)
        assert client.is_server_live() and client.is_server_ready()  # probes need no key
        texts = _inputs(grpcclient, {"text": TEXTS[:2]})
        for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": API_KEY}):
            with pytest.raises(InferenceServerException) as refused:
                client.infer("clf", texts, headers=headers)
            assert _code(refused.value) == str(grpc.StatusCode.UNAUTHENTICATED)
            assert API_KEY not in refused.value.message()
        with pytest.raises(InferenceServerException) as refused:
            client.get_model_metadata("clf")
        assert _code(refused.value) == str(grpc.StatusCode.UNAUTHENTICATED)
        labels = client.infer("clf", texts, headers=AUTH).as_numpy("label").tolist()

        held: list = []
        call = client.async_infer("t5", _inputs(grpcclient, {"text": SOURCES[:1]}),
                                  lambda result, error: held.append(error),
                                  parameters=HOLD, headers=AUTH)
        in_flight = lambda: metric_value(served.url, "onnx_engine_requests_in_flight",  # noqa: E731
                                         headers=AUTH)
        wait_until(lambda: in_flight() == 1, "admission of the held call")
        with pytest.raises(InferenceServerException) as overloaded:
            client.infer("clf", texts, headers=AUTH)
        assert _code(overloaded.value) == str(grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert "limit of 1 concurrent requests" in overloaded.value.message()
        call.cancel()
        wait_until(lambda: in_flight() == 0, "the cancelled call's slot freed")
        wait_until(lambda: bool(held), "the cancelled call's callback")
        assert client.infer("clf", texts, headers=AUTH).as_numpy("label").tolist() == labels
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=60) == 0, served.process.stderr.read()


def test_request_timeout_is_deadline_exceeded(artifacts):
    with serving(f"t5={artifacts['t5']}", "--request-timeout-s", "0.1") as served:
        with pytest.raises(InferenceServerException) as late:
            _grpc(served).infer("t5", _inputs(grpcclient, {"text": SOURCES}), parameters=SLOW)
        assert _code(late.value) == str(grpc.StatusCode.DEADLINE_EXCEEDED)
        assert "0.1 s request timeout" in late.value.message()


def test_a_body_limit_over_what_grpc_can_hold_still_serves(artifacts):
    """--max-body-bytes past gRPC's C-int message limit used to end the start in a traceback
    (OverflowError); gRPC takes its largest message instead, HTTP the limit given."""
    with serving(f"clf={artifacts['clf']}", "--max-body-bytes", str(5 * 2**30)) as served:
        assert _ready(_grpc(served))
        result = _grpc(served).infer("clf", _inputs(grpcclient, {"text": TEXTS[:1]}))
        assert result.as_numpy("label").shape == (1,)


def test_sigterm_drains_both_listeners(artifacts):
    """SIGTERM while calls run on both listeners: new calls get UNAVAILABLE, every accepted one
    is answered (exactly the engine's text), then the process exits 0."""
    want = [s.text for s in engine.load(artifacts["t5"]).generate(SOURCES[:2] * 2, **SLOW)]
    with serving(f"clf={artifacts['clf']}", f"t5={artifacts['t5']}",
                 "--max-batch-size", "1") as served:
        answers: dict[int, str] = {}

        def over_http(index: int) -> None:
            answer = httpx.post(f"{served.url}/models/t5", timeout=120,
                                json={"inputs": SOURCES[index % 2], "parameters": SLOW})
            answers[index] = answer.json()[0]["generated_text"]

        def over_grpc(index: int) -> None:
            result = _grpc(served).infer("t5", _inputs(grpcclient, {"text": [SOURCES[index % 2]]}),
                                         parameters=SLOW)
            answers[index] = result.as_numpy("generated_text")[0].decode()

        threads = [threading.Thread(target=over_http if i < 2 else over_grpc, args=(i,))
                   for i in range(4)]
        for thread in threads:
            thread.start()
        wait_until(lambda: metric_value(served.url, "onnx_engine_requests_in_flight") == 4,
                   "admission of all four calls", timeout_s=60)
        served.process.send_signal(signal.SIGTERM)
        client = _grpc(served)
        wait_until(lambda: not _ready(client), "readiness false while draining")
        with pytest.raises(InferenceServerException) as refused:
            client.infer("clf", _inputs(grpcclient, {"text": ["a"]}))
        assert _code(refused.value) == str(grpc.StatusCode.UNAVAILABLE)
        for thread in threads:
            thread.join(timeout=120)
        assert served.process.wait(timeout=60) == 0, served.process.stderr.read()
    assert [answers.get(i) for i in range(4)] == [want[0], want[1], want[0], want[1]]


def test_drain_deadline_cancels_accepted_calls_and_says_so(artifacts):
    with serving(f"t5={artifacts['t5']}", "--drain-timeout-s", "1") as served:
        ended: list = []
        _grpc(served).async_infer("t5", _inputs(grpcclient, {"text": SOURCES[:1]}),
                                  lambda result, error: ended.append(error), parameters=HOLD)
        wait_until(lambda: metric_value(served.url, "onnx_engine_requests_in_flight") == 1,
                   "admission of the held call")
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=60) == 1
        err = served.process.stderr.read()
        assert "error: the drain deadline (--drain-timeout-s 1.0) passed with 1 accepted" in err
        assert "Traceback" not in err
        wait_until(lambda: bool(ended), "the cut call's end")
        assert _code(ended[0]) == str(grpc.StatusCode.UNAVAILABLE), ended[0]


def test_tls_covers_the_grpc_listener_too(artifacts, tmp_path):
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert, key, ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certificate.cert_chain_pems[0].write_to_path(cert)
    certificate.private_key_pem.write_to_path(key)
    authority.cert_pem.write_to_path(ca)
    with serving(f"clf={artifacts['clf']}", "--ssl-certfile", str(cert),
                 "--ssl-keyfile", str(key)) as served:
        client = grpcclient.InferenceServerClient(served.grpc, ssl=True,
                                                  root_certificates=str(ca))
        assert client.is_server_ready()
        labels = client.infer("clf", _inputs(grpcclient, {"text": TEXTS})).as_numpy("label")
        assert len(labels) == len(TEXTS)
        plain = grpcclient.InferenceServerClient(served.grpc)  # no TLS: no answer
        with pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=10)


def _ready(client: grpcclient.InferenceServerClient) -> bool:
    """Readiness; a listener already closed (every call drained) is not ready either."""
    try:
        return client.is_server_ready()
    except InferenceServerException:
        return False


def test_grpc_port_in_use_is_one_line(distilbert):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "onnx_engine", "serve", f"clf={distilbert.artifact}",
             "--port", "0", "--grpc-port", str(port)],
            capture_output=True, text=True, timeout=120)
    finally:
        taken.close()
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: --grpc-port {port}: already in use on 127.0.0.1; stop the other "
                     "server or pick another port (0: any free one)."], done.stderr


def test_grpc_port_is_refused_on_ray(distilbert, capsys):
    from onnx_engine.cli import main

    assert main(["serve", f"clf={distilbert.artifact}", "--ray", "--grpc-port", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "--grpc-port" in error and "Ray" in error, error


def test_committed_stubs_are_what_grpc_tools_generates(tmp_path):
    """`make grpc-stubs` would write exactly the committed descriptor set (no hand edits, no
    drift from the .proto), and it is the only generated file beside the .proto."""
    (tmp_path / PROTO).parent.mkdir(parents=True)
    (tmp_path / PROTO).write_bytes((ROOT / PROTO).read_bytes())
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", ".",
                    f"--descriptor_set_out={DESCRIPTORS}", str(PROTO)], cwd=tmp_path, check=True,
                   timeout=120)
    assert filecmp.cmp(tmp_path / DESCRIPTORS, ROOT / DESCRIPTORS, shallow=False), (
        f"{DESCRIPTORS}: run make grpc-stubs")
    assert sorted(p.name for p in (ROOT / PROTO.parent).glob("*_pb2*.py")) == []


def test_messages_are_on_the_wire_what_tritonclient_sends_and_reads():
    """Every message of our .proto has tritonclient's field numbers, types and names."""
    files = descriptor_pb2.FileDescriptorSet.FromString((ROOT / DESCRIPTORS).read_bytes())
    theirs = triton_messages.DESCRIPTOR.message_types_by_name

    def fields(message) -> dict:
        return {field.number: (field.name, field.type, field.label) for field in message.field}

    def compare(ours, their_descriptor) -> None:
        their_proto = descriptor_pb2.DescriptorProto()
        their_descriptor.CopyToProto(their_proto)
        assert fields(ours) == fields(their_proto), ours.name
        nested = {message.name: message for message in their_descriptor.nested_types}
        for inner in ours.nested_type:
            compare(inner, nested[inner.name])

    # Triton's repository RPCs differ from KServe's; this server implements neither.
    shared = [m for m in files.file[0].message_type if not m.name.startswith("Repository")]
    assert len(shared) == 14
    for message in shared:
        compare(message, theirs[message.name])


# Imports tritonclient.grpc and the server's gRPC service in FIRST-then-other order, then sends
# one ModelInferRequest of ours through tritonclient's message class and back.
SERVICE_MODULE = "onnx_engine.serving.grpc_service"
ONE_PROCESS = """
import {first}, {second}
from onnx_engine.serving.grpc_proto import messages as ours
from tritonclient.grpc import service_pb2 as theirs
request = ours.ModelInferRequest(model_name="clf", id="rq-1", raw_input_contents=[b"ab"])
request.inputs.add(name="text", datatype="BYTES", shape=[1])
request.parameters["top_k"].int64_param = 2
back = ours.ModelInferRequest.FromString(
    theirs.ModelInferRequest.FromString(request.SerializeToString()).SerializeToString())
assert back == request, back
print(ours.ModelInferRequest.DESCRIPTOR.full_name, theirs.ModelInferRequest.DESCRIPTOR.full_name)
"""


@pytest.mark.parametrize("first, second", [("tritonclient.grpc", SERVICE_MODULE),
                                           (SERVICE_MODULE, "tritonclient.grpc")])
def test_tritonclient_and_the_grpc_service_import_into_one_process(first, second):
    done = subprocess.run([sys.executable, "-W", "error", "-c",
                           ONE_PROCESS.format(first=first, second=second)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["inference.ModelInferRequest"] * 2


def test_tritonclient_is_served_by_a_grpc_listener_in_its_own_process(serve_models):
    """This process imported tritonclient.grpc at the top; the server's gRPC listener runs here
    too (in-process app, its lifespan starting gRPC) and answers tritonclient what the engine
    answers; the repository RPCs, not registered, are UNIMPLEMENTED."""
    from onnx_engine.serving.config import ServeConfig
    from onnx_engine.serving.grpc_service import GrpcListener
    from onnx_engine.serving.server import Listener

    grpc_listener = GrpcListener(Listener(port=0), 0)
    with running_server(ServeConfig(), serve_models, alongside=grpc_listener.serving):
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_listener.port}")
        answer = client.infer("clf", _inputs(grpcclient, {"text": TEXTS}), request_id="rq-9",
                              outputs=[grpcclient.InferRequestedOutput("logits")])
        with pytest.raises(InferenceServerException) as refused:  # models are fixed at start
            client.load_model("clf")
    assert _code(refused.value) == str(grpc.StatusCode.UNIMPLEMENTED)
    assert answer.get_response().id == "rq-9"
    np.testing.assert_allclose(answer.as_numpy("logits"), serve_models["clf"].logits(TEXTS),
                               rtol=1e-5, atol=1e-6)
