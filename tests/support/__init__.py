"""What several test modules share: local servers speaking real wire formats, data and
model factories, paths and ports. Test modules import from here, never from one
another or from a conftest."""
