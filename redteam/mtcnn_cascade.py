"""MTCNN's three-stage cascade over facenet-pytorch's networks, with every resampling read from one
integral image.

The cascade is the one of Zhang, Zhang, Li and Qiao, "Joint Face Detection and Alignment using
Multi-task Cascaded Convolutional Networks", IEEE SPL 2016, as facenet-pytorch 2.5.3 runs it
(`facenet_pytorch.models.utils.detect_face`): P-Net on an image pyramid, R-Net on 24 x 24 crops of its
candidates, O-Net on 48 x 48 crops of R-Net's. facenet-pytorch resamples each pyramid level and each
candidate with its own `interpolate(mode="area")` call, thousands per photo and about 40% of the
detector's time on 1 MP photos. Here every one of those box means comes from one integral image
(summed-area table, Crow, "Summed-area tables for texture mapping", SIGGRAPH 1984) per batch: the sums
are exact (integer sums of 8-bit pixels) and are divided the way torch's adaptive average pooling divides
them (by the cell's height, then its width), so P-Net, R-Net and O-Net see the same float32 inputs, and
the detections are the same, as facenet-pytorch's (tests/redteam/test_mtcnn_cascade.py checks this
against facenet-pytorch on real photos, bit for bit).

Unlike facenet-pytorch, a candidate box with no pixel inside the image is dropped (there it leaves the
crops and the boxes misaligned and raises).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import (
    batched_nms_numpy,
    bbreg,
    fixed_batch_process,
    generateBoundingBox,
    pad,
    rerec,
)
from torchvision.ops.boxes import batched_nms

__all__ = ["AreaSampler", "run_cascade"]

_CHUNK = 512  # crops gathered at once: bounds the gathers to a few tens of MB


def _cells(length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end offsets of `size` adaptive-average-pooling cells over `length` pixels (torch's
    rule: cell i covers [floor(i L / S), ceil((i + 1) L / S))); `length` is (N,) -> (N, size) each."""
    steps = torch.arange(size, device=length.device)
    span = length.view(-1, 1)
    return (steps * span) // size, -((-(steps + 1) * span) // size)


def _integral(image: np.ndarray) -> np.ndarray:
    """The summed-area table of an H x W x 3 uint8 image, (H + 1) x (W + 1) x 3 int32 modulo 2^32.

    A box's sum is a difference of four entries; taken modulo 2^32 it is exact whenever the box's sum is
    below 2^31 (every cell here is under 2^24), so the table needs only 32 bits at any image size: the
    entries themselves can wrap above 8.4 MP. Below that OpenCV writes the int32 table directly; above, its
    float64 table (exact) is reduced modulo 2^32 by numpy's defined unsigned conversion. The differences
    are then taken in torch's int32, which wraps (two's complement); a test checks a 17.6 MP photo whose
    table passes 2^32.
    """
    if 255 * image.shape[0] * image.shape[1] < 2**31:
        return cv2.integral(image, sdepth=cv2.CV_32S)
    return cv2.integral(image, sdepth=cv2.CV_64F).astype(np.int64).astype(np.uint32).view(np.int32)


class AreaSampler:
    """Area (box-mean) resampling of a batch of 8-bit images, whole or cropped, from its integral image.

    `images` is B x H x W x 3 uint8. Outputs (of `dtype`, on `device`) are B x 3 x h x w in channels-last
    layout, or N x 3 x S x S crops in contiguous layout: the layouts facenet-pytorch's calls give P-Net and
    R-Net / O-Net (a convolution's float rounding depends on it). They equal `interpolate(mode="area")` of
    the same pixels wherever torch's own float32 sum of a cell is exact, below 2^24 (a cell of 65,793
    pixels; a 12 MP photo's coarsest pyramid level stays under it); above, these sums are the exact ones.
    """

    def __init__(self, images: np.ndarray, dtype: torch.dtype, device: torch.device) -> None:
        tables = [_integral(image) for image in images]
        table = tables[0][None] if len(tables) == 1 else np.stack(tables)
        self._table = torch.from_numpy(table).to(device)  # B x (H + 1) x (W + 1) x 3 int32, modulo 2^32
        self._dtype = dtype
        self.device = device
        self.shape = (images.shape[1], images.shape[2])  # H, W

    def resize(self, height: int, width: int) -> torch.Tensor:
        """Every image resampled to `height` x `width` (a pyramid level)."""
        y0, y1 = (v[0] for v in _cells(torch.tensor([self.shape[0]], device=self.device), height))
        x0, x1 = (v[0] for v in _cells(torch.tensor([self.shape[1]], device=self.device), width))
        band = self._table.index_select(1, y1) - self._table.index_select(1, y0)
        sums = band.index_select(2, x1) - band.index_select(2, x0)
        return self._means(sums, (y1 - y0).view(1, -1, 1, 1), (x1 - x0).view(1, 1, -1, 1))

    def crops(self, regions: torch.Tensor, size: int) -> torch.Tensor:
        """Each region resampled to `size` x `size`. `regions` is N x 5 int64: image index, then rows
        [top, bottom) and columns [left, right), every region non-empty and inside its image."""
        parts = [self._crop_chunk(regions[start : start + _CHUNK], size) for start in range(0, len(regions), _CHUNK)]
        if not parts:
            return torch.zeros(0, 3, size, size, dtype=self._dtype, device=self.device)
        return torch.cat(parts).contiguous()

    def _crop_chunk(self, regions: torch.Tensor, size: int) -> torch.Tensor:
        image, top, bottom, left, right = (column.view(-1, 1) for column in regions.unbind(1))
        y0, y1 = (v + top for v in _cells(bottom - top, size))
        x0, x1 = (v + left for v in _cells(right - left, size))
        _, rows, cols, channels = self._table.shape
        flat = self._table.view(-1, channels)

        def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            index = (image * rows + y)[:, :, None] * cols + x[:, None, :]
            return flat.index_select(0, index.view(-1)).view(len(regions), size, size, channels)

        sums = at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0)
        return self._means(sums, (y1 - y0)[:, :, None, None], (x1 - x0)[:, None, :, None])

    def _means(self, sums: torch.Tensor, cell_height: torch.Tensor, cell_width: torch.Tensor) -> torch.Tensor:
        # torch's adaptive average pooling divides the float32 sum by the cell's height, then by its width.
        means = sums.to(self._dtype) / cell_height.to(self._dtype) / cell_width.to(self._dtype)
        return means.permute(0, 3, 1, 2)  # channels-last strides


def _normalised(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


def _pyramid_scales(height: int, width: int, min_face_size: int, factor: float) -> list[float]:
    """P-Net's scales: the first maps `min_face_size` to its 12 px window; each next one is `factor`
    smaller, while the image's shorter side is still at least 12 px."""
    scale = 12.0 / min_face_size
    shorter = min(height, width) * scale
    scales = []
    while shorter >= 12:
        scales.append(scale)
        scale *= factor
        shorter *= factor
    return scales


def _proposals(model: Any, sampler: AreaSampler, min_face_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1: P-Net's candidate boxes over the pyramid, NMS per level and image, then per image, and
    its box regression applied; squared."""
    height, width = sampler.shape
    found, owners, picks, offset = [], [], [], 0
    device = sampler.device
    for scale in _pyramid_scales(height, width, min_face_size, model.factor):
        level = sampler.resize(int(height * scale + 1), int(width * scale + 1))
        regression, probability = model.pnet(_normalised(level))
        boxes, image_index = generateBoundingBox(regression, probability[:, 1], scale, model.thresholds[0])
        found.append(boxes)
        owners.append(image_index)
        picks.append(batched_nms(boxes[:, :4], boxes[:, 4], image_index, 0.5) + offset)
        offset += boxes.shape[0]
    if not found:
        return torch.zeros(0, 5, device=device), torch.zeros(0, dtype=torch.int64, device=device)
    pick = torch.cat(picks)
    boxes, image_index = torch.cat(found)[pick], torch.cat(owners)[pick]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_index, 0.7)
    boxes, image_index = boxes[pick], image_index[pick]
    box_width, box_height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    refined = torch.stack(
        [
            boxes[:, 0] + boxes[:, 5] * box_width,
            boxes[:, 1] + boxes[:, 6] * box_height,
            boxes[:, 2] + boxes[:, 7] * box_width,
            boxes[:, 3] + boxes[:, 8] * box_height,
            boxes[:, 4],
        ]
    ).permute(1, 0)
    return rerec(refined), image_index


def _crops_of(sampler: AreaSampler, boxes: torch.Tensor, image_index: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The boxes' pixels (clipped to the image as facenet-pytorch's `pad` clips them) at `size` x `size`,
    normalised, and which boxes had any pixel in the image."""
    height, width = sampler.shape
    top, bottom, left, right = (torch.as_tensor(v.astype(np.int64), device=boxes.device) for v in pad(boxes, width, height))
    regions = torch.stack([image_index.to(torch.int64), top - 1, bottom, left - 1, right], dim=1)
    inside = (regions[:, 2] > regions[:, 1]) & (regions[:, 4] > regions[:, 3])
    return _normalised(sampler.crops(regions[inside], size)), inside


def _refined(model: Any, sampler: AreaSampler, boxes: torch.Tensor, image_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2: R-Net scores and regresses each candidate on its 24 x 24 crop; NMS per image; squared."""
    crops, inside = _crops_of(sampler, boxes, image_index, 24)
    boxes, image_index = boxes[inside], image_index[inside]
    regression, probability = (out.permute(1, 0) for out in fixed_batch_process(crops, model.rnet))
    score = probability[1, :]
    keep = score > model.thresholds[1]
    boxes = torch.cat((boxes[keep, :4], score[keep].unsqueeze(1)), dim=1)
    image_index, moves = image_index[keep], regression[:, keep].permute(1, 0)
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_index, 0.7)
    return rerec(bbreg(boxes[pick], moves[pick])), image_index[pick]


def _outputs(model: Any, sampler: AreaSampler, boxes: torch.Tensor, image_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 3: O-Net scores, regresses and places the five landmarks on each 48 x 48 crop; NMS per image
    by the overlap over the smaller box ("Min")."""
    crops, inside = _crops_of(sampler, boxes, image_index, 48)
    boxes, image_index = boxes[inside], image_index[inside]
    regression, marks, probability = (out.permute(1, 0) for out in fixed_batch_process(crops, model.onet))
    score = probability[1, :]
    keep = score > model.thresholds[2]
    marks = marks[:, keep]
    boxes = torch.cat((boxes[keep, :4], score[keep].unsqueeze(1)), dim=1)
    image_index, moves = image_index[keep], regression[:, keep].permute(1, 0)
    box_width = boxes[:, 2] - boxes[:, 0] + 1
    box_height = boxes[:, 3] - boxes[:, 1] + 1
    marks_x = box_width.repeat(5, 1) * marks[:5, :] + boxes[:, 0].repeat(5, 1) - 1
    marks_y = box_height.repeat(5, 1) * marks[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
    marks = torch.stack((marks_x, marks_y)).permute(2, 1, 0)
    boxes = bbreg(boxes, moves)
    pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_index, 0.7, "Min")
    return boxes[pick], image_index[pick], marks[pick]


@torch.no_grad()
def run_cascade(model: Any, images: list[np.ndarray], min_face_size: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Faces in each of `images` (H x W x 3 uint8 RGB, one size) by facenet-pytorch `MTCNN` `model`'s
    networks, thresholds and pyramid factor, searched down to `min_face_size` px.

    Returns:
        Per image: boxes (n x 4, x0 y0 x1 y1), probabilities (n,) and landmarks (n x 5 x 2), float32, in
        facenet-pytorch's order (descending area, as `MTCNN(select_largest=True)` gives them).
    """
    device = next(model.pnet.parameters()).device
    dtype = next(model.pnet.parameters()).dtype
    sampler = AreaSampler(np.stack(images), dtype, device)
    boxes, image_index = _proposals(model, sampler, min_face_size)
    marks = torch.zeros(0, 5, 2, device=device)
    if len(boxes) > 0:
        boxes, image_index = _refined(model, sampler, boxes, image_index)
    if len(boxes) > 0:
        boxes, image_index, marks = _outputs(model, sampler, boxes, image_index)
    boxes_np, marks_np, owner = boxes.cpu().numpy(), marks.cpu().numpy(), image_index.cpu().numpy()
    faces = []
    for number in range(len(images)):
        mine = np.flatnonzero(owner == number)
        order = mine[np.argsort((boxes_np[mine, 2] - boxes_np[mine, 0]) * (boxes_np[mine, 3] - boxes_np[mine, 1]))[::-1]]
        faces.append((boxes_np[order, :4], boxes_np[order, 4], marks_np[order]))
    return faces
