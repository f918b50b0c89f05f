// The simulator, whole: cost models (sim_cost_model.h, modelled), the
// replay through production code (sim_replay.h, which says what is
// production and what is modelled), sweeps and the review (sim_review.h),
// and reports (sim_report.h). Include the one you need; this header is for
// the CLI, which uses them all.
#pragma once

#include "kvstack/sim_cost_model.h"
#include "kvstack/sim_replay.h"
#include "kvstack/sim_report.h"
#include "kvstack/sim_review.h"
