"""Synthetic data sets: the teacher-student problem (:mod:`.teacher_student`), finite sets as padded
arrays (:mod:`.sets`) and the symmetric set functions that label them (:mod:`.set_functions`)."""

from .set_functions import SYMMETRIC_TARGETS, SymmetricData, set_function, symmetric_targets
from .sets import pad_sets, sample_sets
from .teacher_student import TeacherStudent, sample_inputs, teacher_student

__all__ = [
    "TeacherStudent",
    "teacher_student",
    "sample_inputs",
    "SYMMETRIC_TARGETS",
    "SymmetricData",
    "pad_sets",
    "sample_sets",
    "set_function",
    "symmetric_targets",
]
