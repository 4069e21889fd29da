#pragma once
// One place that turns a failed system call or ioctl into an exception that names it.
#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace nvhv {

// A failed system call: what() is "<operation>: <strerror>".
class SystemError : public std::system_error {
 public:
  SystemError(int err, const std::string& operation)
      : std::system_error(err, std::generic_category(), operation) {}
  int err() const { return code().value(); }
};

// Bad user input (config, command line, request); the message names the field.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void throw_errno(const std::string& operation) { throw SystemError(errno, operation); }

// Calls ioctl(fd, request, arg) and throws SystemError naming the request when it fails.
// Retries on EINTR except where the caller asks to see it (KVM_RUN).
long checked_ioctl(int fd, unsigned long request, const char* name, unsigned long arg);

template <typename Arg>
long checked_ioctl(int fd, unsigned long request, const char* name, Arg arg) {
  if constexpr (std::is_pointer_v<Arg>)
    return checked_ioctl(fd, request, name, reinterpret_cast<unsigned long>(arg));
  else
    return checked_ioctl(fd, request, name, static_cast<unsigned long>(arg));
}

}  // namespace nvhv

// NVHV_IOCTL(fd, KVM_GET_REGS, &regs): stringifies the request name for the error message.
#define NVHV_IOCTL(fd, req, ...) ::nvhv::checked_ioctl((fd), (req), #req __VA_OPT__(, ) __VA_ARGS__)
