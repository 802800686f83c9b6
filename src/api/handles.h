// The opaque handles of the C API. Internal: tests and benchmarks of
// internals may include it; applications only see the typedefs.
#ifndef MEMMAMBA_API_HANDLES_H_
#define MEMMAMBA_API_HANDLES_H_

#include <memory>
#include <string>

#include "memmamba/memmamba.h"
#include "model/model.h"
#include "runtime/session.h"
#include "train/trainer.h"

struct mm_model {
  std::unique_ptr<memmamba::Model> impl;
};

struct mm_session {
  std::unique_ptr<memmamba::Session> impl;
  std::string last_error;
};

struct mm_trainer {
  std::unique_ptr<memmamba::Trainer> impl;
  mutable std::string last_error;
};

#endif  // MEMMAMBA_API_HANDLES_H_
