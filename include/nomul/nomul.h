/*
 * nomul/nomul.h — the whole public API of libnomul: neural-network training
 * with piecewise affine operations in place of float multiplication.
 */
#ifndef NOMUL_NOMUL_H
#define NOMUL_NOMUL_H

#include "nomul/version.h"
#include "nomul/isa.h"
#include "nomul/arith.h"
#include "nomul/vectors.h"
#include "nomul/error.h"
#include "nomul/threads.h"
#include "nomul/gemm.h"
#include "nomul/conv.h"
#include "nomul/opcfg.h"
#include "nomul/optim.h"
#include "nomul/functional.h"
#include "nomul/autodiff.h"
#include "nomul/audit.h"
#include "nomul/data.h"
#include "nomul/safetensors.h"
#include "nomul/progress.h"
#include "nomul/models.h"
#include "nomul/train.h"
#include "nomul/text.h"
#include "nomul/dist.h"

#endif
