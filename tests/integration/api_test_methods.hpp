#pragma once
// A dispatcher's worth of test methods, shared by the in-process server tests and the
// api_test_server executable that nvhvctl is tested against.
//   echo PARAMS          -> PARAMS (null when absent)
//   len {"s"}            -> length of s
//   sum {"a","b"?}       -> a + b, with strict params validation
//   later {"ms","value"} -> value, replied from another thread after ms
//   fail                 -> -32001 with data {"why":"test"}
//   busy                 -> -32002
//   crash                -> a std::runtime_error (-32603)
//   drop                 -> never replies (-32603 when the Reply dies)
//   blob {"bytes"}       -> a string of that many 'x'
//   emit {"method","params"?} -> true; then the notification, from another thread
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vmm/api/jsonrpc.hpp"

namespace nvhv::test {

class ApiTestMethods {
 public:
  using Notify = std::function<void(const std::string& method, const nlohmann::json& params)>;
  ApiTestMethods(api::Dispatcher& dispatcher, Notify notify);
  ~ApiTestMethods();  // joins every thread the methods started, so no Reply outlives it
  ApiTestMethods(const ApiTestMethods&) = delete;
  ApiTestMethods& operator=(const ApiTestMethods&) = delete;

 private:
  void spawn(std::function<void()> work);

  Notify notify_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

}  // namespace nvhv::test
