"""Synthetic data sets: the teacher-student problem (:mod:`.teacher_student`), finite sets as padded
arrays (:mod:`.sets`), the symmetric set functions that label them (:mod:`.set_functions`) and the
targets of the depth-separation literature (:mod:`.depth`)."""

from .depth import (
    PROFILES,
    DepthData,
    bjv_function,
    bjv_target,
    deep_relu_target,
    radial_inputs,
    radial_profile,
    radial_target,
    relu_network,
    student_t_inputs,
)
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
    "PROFILES",
    "DepthData",
    "radial_inputs",
    "radial_profile",
    "radial_target",
    "student_t_inputs",
    "bjv_function",
    "bjv_target",
    "relu_network",
    "deep_relu_target",
]
