//! YOLOX (family `yolox`): Megvii's YOLOX detectors (Apache-2.0), COCO class 0 = person.
