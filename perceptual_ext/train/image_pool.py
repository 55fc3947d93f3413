"""The image history buffer of Shrivastava et al. (2017), as CycleGAN trains its discriminators."""
from __future__ import annotations

import torch
from torch import Tensor

from .. import _checks


class ImagePool:
    """A buffer of previously generated images, so the discriminator also sees older fakes.

    ``query(images)`` goes through the batch image by image: while the pool holds fewer than
    ``size`` images, the image is stored and returned; once it is full, with probability 1/2
    the image is returned unchanged, otherwise a uniformly chosen stored image is returned and
    the new one takes its place. ``size=0`` returns its input (no buffer). The reference
    implementation (CycleGAN, pool of 50) draws with Python's ``random``; here the draws come
    from the pool's own ``torch.Generator``, so :meth:`state_dict` / :meth:`load_state_dict`
    make a resumed run draw exactly what an uninterrupted one would.

    Stored images are detached copies: the discriminator's loss on a pooled image never
    back-propagates into the generator.

    Args:
        size: how many images the pool keeps (CycleGAN: 50).
        seed: seed of the pool's generator.

    Example:
        >>> pool = ImagePool(2)
        >>> out = pool.query(torch.rand(2, 3, 8, 8))  # fills the pool: returned as given
        >>> len(pool)
        2
    """

    def __init__(self, size: int = 50, seed: int = 0):
        _checks.positive_int(size, "size", minimum=0)
        self.size = size
        self.images: list = []
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: Tensor) -> Tensor:
        """The batch to show the discriminator: ``images`` [N, ...] with some swapped for older ones."""
        _checks.tensor(images, "images")
        if images.dim() < 1:
            raise ValueError("images must be a batch [N, ...], got a 0-D tensor")
        if self.size == 0:
            return images
        if self.images and (images.shape[1:] != self.images[0].shape or images.dtype != self.images[0].dtype):
            raise ValueError(f"images must be [N, {', '.join(map(str, self.images[0].shape))}] of dtype "
                             f"{self.images[0].dtype} like the pooled ones, got {tuple(images.shape)} {images.dtype}")
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand((), generator=self.generator)) > 0.5:
                index = int(torch.randint(self.size, (), generator=self.generator))
                out.append(self.images[index].to(image.device))
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.stack(out) if out else images.detach()

    def state_dict(self) -> dict:
        """The stored images (on the CPU) and the generator's state."""
        return {"size": self.size, "images": [im.cpu() for im in self.images], "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if state["size"] != self.size:
            raise ValueError(f"the pool state has size {state['size']}, this pool {self.size}")
        self.images = list(state["images"])
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"ImagePool(size={self.size}, stored={len(self.images)})"
