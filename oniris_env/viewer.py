"""A small pygame window that shows 64 x 96 frames scaled up (nearest neighbour), for render_mode='human'."""

from __future__ import annotations

import numpy as np


class FrameViewer:
    """Opens a window on first `show`; `close` releases it. Needs a display (or SDL_VIDEODRIVER=dummy)."""

    def __init__(self, title: str, fps: float, scale: int = 6) -> None:
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        self.title, self.fps, self.scale = title, fps, scale
        self._screen = None
        self._clock = None

    def show(self, frame: np.ndarray) -> None:
        """Display one `(H, W, 3)` uint8 frame and wait to keep `fps`."""
        import pygame

        h, w, _ = frame.shape
        if self._screen is None:
            pygame.display.init()
            self._screen = pygame.display.set_mode((w * self.scale, h * self.scale))
            pygame.display.set_caption(self.title)
            self._clock = pygame.time.Clock()
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        self._screen.blit(pygame.transform.scale(surface, self._screen.get_size()), (0, 0))
        pygame.event.pump()
        pygame.display.flip()
        self._clock.tick(self.fps)

    def close(self) -> None:
        if self._screen is not None:
            import pygame

            pygame.display.quit()
            self._screen = None
