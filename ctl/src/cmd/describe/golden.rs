//! Golden tests: whole describer outputs for fixed objects, compared with what kubectl
//! prints for the same objects.
