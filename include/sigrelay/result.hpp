// result<T>: errors as values on hot paths (std::expected is C++23; this is
// the subset we need, usable with GCC 12 and Clang 14 in C++20 mode).
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace sigrelay {

// An error: a stable machine code (errno-style or module-defined) and a
// message meant for a log line or an administrator.
struct error {
    int code = 0;
    std::string message;
};

inline error make_error(std::string message, int code = -1) { return error{code, std::move(message)}; }

template <class T>
class [[nodiscard]] result {
public:
    result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    result(error e) : v_(std::in_place_index<1>, std::move(e)) {}

    bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const error& err() const& { return std::get<1>(v_); }
    error&& err() && { return std::get<1>(std::move(v_)); }

private:
    std::variant<T, error> v_;
};

template <>
class [[nodiscard]] result<void> {
public:
    result() = default;
    result(error e) : e_(std::move(e)), ok_(false) {}

    bool ok() const noexcept { return ok_; }
    explicit operator bool() const noexcept { return ok_; }
    const error& err() const& { return e_; }
    error&& err() && { return std::move(e_); }

private:
    error e_;
    bool ok_ = true;
};

inline result<void> ok() { return {}; }

}  // namespace sigrelay

// Propagate an error from an expression yielding result<...>.
#define SIGRELAY_TRY(expr)                              \
    do {                                                \
        auto&& sigrelay_try_r_ = (expr);                \
        if (!sigrelay_try_r_) return sigrelay_try_r_.err(); \
    } while (0)
