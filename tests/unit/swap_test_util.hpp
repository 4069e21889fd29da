#pragma once
// Helpers shared by the swap engine's unit tests.
#include <functional>
#include <string>

#include "persistence/swap.hpp"

namespace nvhv::persistence::test {

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The message of the SwapError `f` throws, or "(not refused)".
inline std::string refusal_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const SwapError& e) {
    return e.what();
  }
  return "(not refused)";
}

}  // namespace nvhv::persistence::test
