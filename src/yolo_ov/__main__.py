"""``python -m yolo_ov`` runs the command line."""

from .cli import main

main()
