// Simulator reports: terminal text and a self-contained HTML page. They
// render results; they compute nothing a replay did not.
#pragma once

#include <string>
#include <vector>

#include "kvstack/sim_replay.h"
#include "kvstack/sim_review.h"

namespace kvstack::sim {

// Plain-text renderings for the terminal.
std::string FormatSimResult(const SimResult& result);
// One line: the load, or how overloaded the replay was. Empty without arrivals.
std::string FormatLoad(const LoadReport& load);
std::string FormatSweep(const std::vector<SweepPoint>& sweep);
std::string FormatReview(const Review& review);

// A self-contained HTML page (inline CSS, inline SVG charts, a small inline
// script that marks each chart data-rendered="1" once it holds data; no
// external asset). Charts: hit rate vs capacity per policy (log axis), TTFT
// distribution, memory split, occupancy over time; those without data are
// drawn empty with a note.
struct HtmlReportInput {
  std::string title;
  std::string trace_source;
  const SimResult* result = nullptr;               // required
  const std::vector<SweepPoint>* sweep = nullptr;  // optional
  const Review* review = nullptr;                  // optional
};
std::string RenderHtmlReport(const HtmlReportInput& input);

}  // namespace kvstack::sim
