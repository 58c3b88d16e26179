"""``spinenas data shapes``: write the embedded shapes dataset in COCO format."""

from __future__ import annotations

import os

from nas.commands.common import UserError


def run_shapes(args) -> int:
    """Generate the dataset and print what was written."""
    from nas.tasks.detection.shapes import write_shapes_dataset

    if os.path.exists(os.path.join(args.out, "instances_train.json")) and not args.overwrite:
        raise UserError(f"{args.out} already holds a dataset; pass --overwrite to replace it")
    try:
        counts = write_shapes_dataset(args.out, train=args.train, val=args.val, image_size=args.image_size,
                                      seed=args.seed, max_objects=args.max_objects, progress=not args.quiet)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(f"wrote {counts['train_images']} train images ({counts['train_objects']} objects) and "
          f"{counts['val_images']} val images ({counts['val_objects']} objects) to {args.out}")
    return 0


def add_parser(subparsers) -> None:
    """Register ``spinenas data``."""
    parser = subparsers.add_parser("data", help="datasets")
    kinds = parser.add_subparsers(dest="dataset", required=True)
    shapes = kinds.add_parser("shapes", help="generate the shapes detection dataset (COCO format)")
    shapes.add_argument("--out", required=True, help="folder to write")
    shapes.add_argument("--train", type=int, default=1000, help="training images (default 1000)")
    shapes.add_argument("--val", type=int, default=200, help="validation images (default 200)")
    shapes.add_argument("--image-size", type=int, default=256, help="side of the square images (default 256)")
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--max-objects", type=int, default=6, help="objects per image, at most (default 6)")
    shapes.add_argument("--overwrite", action="store_true")
    shapes.add_argument("--quiet", action="store_true", help="no progress bar")
    shapes.set_defaults(handler=run_shapes)
