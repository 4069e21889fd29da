// The notice path's short time slice (vmm/base/time_slice.hpp), on the real scheduler.
#include <sys/utsname.h>

#include <cstdio>
#include <thread>

#include <gtest/gtest.h>

#include "vmm/base/time_slice.hpp"

namespace nvhv {
namespace {

using std::chrono::microseconds;

// Custom slices for normal threads arrived in Linux 6.12.
bool kernel_takes_custom_slices() {
  utsname u{};
  int major = 0, minor = 0;
  if (::uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 12);
}

// Each case runs in its own thread: the slice belongs to the thread, and gtest's must stay as it was.
template <typename F>
void in_fresh_thread(F f) {
  std::thread(f).join();
}

TEST(TimeSlice, ANoticePathThreadGetsTheShortSliceItAsksFor) {
  in_fresh_thread([] {
    const bool taken = request_time_slice(kNoticePathSlice);
    if (!kernel_takes_custom_slices()) {
      EXPECT_FALSE(taken) << "a kernel before 6.12 reported a custom slice";
      return;
    }
    EXPECT_TRUE(taken);
    EXPECT_EQ(current_time_slice(), kNoticePathSlice);
  });
}

TEST(TimeSlice, ThreadsCreatedAfterTheRequestInheritItAndOthersDoNot) {
  if (!kernel_takes_custom_slices()) GTEST_SKIP() << "this kernel has no custom time slices (before 6.12)";
  const auto default_slice = current_time_slice();
  ASSERT_TRUE(default_slice.has_value());
  ASSERT_NE(default_slice, kNoticePathSlice) << "the default slice is already 100 us: this test cannot tell them apart";
  std::optional<microseconds> child, sibling;
  in_fresh_thread([&] {
    ASSERT_TRUE(request_time_slice(kNoticePathSlice));
    std::thread([&] { child = current_time_slice(); }).join();
  });
  in_fresh_thread([&] { sibling = current_time_slice(); });
  EXPECT_EQ(child, kNoticePathSlice) << "a thread the event loop starts (a disk sync) runs as promptly";
  EXPECT_EQ(sibling, default_slice) << "the request leaked out of the thread that made it";
}

}  // namespace
}  // namespace nvhv
