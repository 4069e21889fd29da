#pragma once
// The one way to include <linux/kvm.h> in this project.
//
// Debian 12's uapi headers declare flexible array members through __DECLARE_FLEX_ARRAY, which
// wraps them in a struct holding an empty struct. In C that empty struct has size 0; in C++ it
// has size 1, so under g++ sizeof(struct kvm_cpuid2) is 12 instead of 8 and every ioctl number
// and entry offset derived from it (KVM_GET_SUPPORTED_CPUID, KVM_GET_MSRS, KVM_GET_XSAVE, ...)
// disagrees with the kernel. Declaring the member as a GNU zero-length array restores the
// kernel's layout.
#include <linux/stddef.h>
#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <linux/kvm.h>
#pragma GCC diagnostic pop

#include <cstddef>

static_assert(sizeof(struct kvm_cpuid2) == 8 && offsetof(struct kvm_cpuid2, entries) == 8,
              "<linux/kvm.h> was included before vmm/kvm/kvm_uapi.hpp: include only the latter");
static_assert(sizeof(struct kvm_msrs) == 8 && sizeof(struct kvm_msr_list) == 4);
static_assert(sizeof(struct kvm_xsave) == 4096);
static_assert(sizeof(struct kvm_irq_routing) == 8);
