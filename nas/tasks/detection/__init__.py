"""RetinaNet detection on COCO-format data, scored by COCO AP."""
