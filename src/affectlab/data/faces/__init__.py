"""Face geometry: landmark alignment, face detection and face boxes."""
