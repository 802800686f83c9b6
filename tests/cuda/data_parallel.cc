// Data-parallel training over NCCL (Trainer::JoinDataParallel, DESIGN 6),
// one process per GPU as users run it:
//   - a group of one: every step equals, bit for bit, that of a trainer
//     that never joined (the whole collective path runs, with one rank);
//     joining twice or in the middle of an accumulation is refused;
//   - with 2 or more GPUs: N ranks of b sequences each against one trainer
//     given the N*b sequences (the group's loss to 1e-5, the update in
//     aggregate to 5 %: AdamW's first steps move a weight whose gradient is
//     noise by ±lr either way), every rank holding the same bits; the
//     NCCL id goes from rank 0 to the others through a file.
//
// CUDA must not be initialised before fork(), so the parent only forks and
// waits: each scenario runs in children. Exit 77 (a CTest skip) without a
// CUDA device or without NCCL; the multi-GPU part reports itself skipped on
// a machine of one GPU.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_library.h"
#include "model/model.h"
#include "train/data_parallel.h"
#include "train/trainer.h"

namespace memmamba {
namespace {

constexpr int kSkip = 77;

// Runs f in a child process; returns its exit code (f's return value).
int InChild(const std::function<int()>& f) {
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    const int code = f();
    std::fflush(stdout);
    _exit(code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int Fail(const std::string& what) {
  std::printf("FAILED: %s\n", what.c_str());
  return 1;
}

ModelConfig Config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.d_model = 32;
  c.n_layer = 4;
  c.d_state = 4;
  c.summary_dim = 16;
  c.attn_heads = 2;
  c.note_window = 4;
  c.pool_capacity = 6;
  c.cross_layer_period = 2;
  c.cross_layer_span = 2;
  c.Resolve().IgnoreError();
  return c;
}

std::unique_ptr<Model> MakeModel() {
  ModelOptions one;
  one.n_threads = 1;
  auto m = Model::Create(Config(), 11, one);
  return m.ok() ? std::move(*m) : nullptr;
}

TrainerOptions Opts(int64_t accum) {
  TrainerOptions o;
  o.learning_rate = 3e-3f;
  o.accum_steps = accum;
  o.n_threads = 1;
  o.cuda = true;
  return o;
}

// Step i's batch: B sequences of T tokens.
std::vector<int32_t> Tokens(int i, int64_t B, int64_t T) {
  std::mt19937 rng(1000 + i);
  std::vector<int32_t> t(B * T);
  for (auto& x : t) x = static_cast<int32_t>(rng() % 64);
  return t;
}

std::vector<float> Flat(const Model& m) {
  std::vector<float> out;
  ModelWeights w = m.weights();
  for (const ParamRef& p : ListParams(m.config(), &w)) {
    const float* d = p.matrix ? p.matrix->f32.data() : p.vector ? p.vector->data() : p.scalar;
    out.insert(out.end(), d, d + p.numel());
  }
  return out;
}

std::vector<float> Weights(const Trainer& t) {
  auto m = t.ExportModel(ModelOptions{});
  return m.ok() ? Flat(**m) : std::vector<float>{};
}

void WriteFloats(const std::string& path, const std::vector<float>& v) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::vector<float> ReadFloats(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  std::vector<float> v(in ? static_cast<size_t>(in.tellg()) / sizeof(float) : 0);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), v.size() * sizeof(float));
  return v;
}

double NormErr(const std::vector<float>& a, const std::vector<float>& ref) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    norm += double(ref[i]) * ref[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

// Devices this machine has (0: none, or no CUDA backend).
int CountDevices() {
  int n = 0;
  while (n < 8 && CudaContext::Create(n).ok()) ++n;
  return n;
}

int GroupOfOne() {
  std::unique_ptr<Model> model = MakeModel();
  auto alone = Trainer::Create(*model, Opts(2));
  auto joined = Trainer::Create(*model, Opts(2));
  if (!alone.ok() || !joined.ok()) return Fail("trainers: " + alone.status().ToString());
  auto id = CreateNcclId();
  if (!id.ok()) {
    std::printf("skipped: %s\n", std::string(id.status().message()).c_str());
    return kSkip;
  }
  DataParallelOptions o;
  o.world_size = 1;
  o.rank = 0;
  o.nccl_id = id->data();
  // Not in the middle of an accumulation.
  std::vector<int32_t> t0 = Tokens(0, 2, 33);
  if (!(*joined)->Step(Batch{t0.data(), 2, 33, nullptr}, nullptr).ok()) return Fail("step");
  if (CodeOf((*joined)->JoinDataParallel(o)) != ErrorCode::kInvalidArgument) {
    return Fail("a join in the middle of an accumulation was not refused");
  }
  if (!(*alone)->Step(Batch{t0.data(), 2, 33, nullptr}, nullptr).ok()) return Fail("step");
  std::vector<int32_t> t1 = Tokens(1, 2, 33);
  for (auto* t : {&*alone, &*joined}) {
    if (!(*t)->Step(Batch{t1.data(), 2, 33, nullptr}, nullptr).ok()) return Fail("step");
  }
  absl::Status s = (*joined)->JoinDataParallel(o);
  if (!s.ok()) return Fail("join: " + s.ToString());
  if ((*joined)->world_size() != 1) return Fail("world size");
  if (CodeOf((*joined)->JoinDataParallel(o)) != ErrorCode::kInvalidArgument) {
    return Fail("a second join was not refused");
  }
  // A bad batch in a group is refused after taking part in the step's
  // collective (else the other ranks would wait for ever); nothing changes.
  std::vector<int32_t> bad = Tokens(9, 2, 33);
  bad[7] = 1000;
  if (CodeOf((*joined)->Step(Batch{bad.data(), 2, 33, nullptr}, nullptr)) !=
      ErrorCode::kTokenOutOfRange) {
    return Fail("a bad token in a group was not refused as such");
  }
  for (int i = 2; i < 8; ++i) {
    std::vector<int32_t> t = Tokens(i, 2, 33);
    StepResult ra, rj;
    if (!(*alone)->Step(Batch{t.data(), 2, 33, nullptr}, &ra).ok()) return Fail("step");
    s = (*joined)->Step(Batch{t.data(), 2, 33, nullptr}, &rj);
    if (!s.ok()) return Fail("group step: " + s.ToString());
    if (ra.loss != rj.loss || ra.grad_norm != rj.grad_norm || ra.tokens != rj.tokens ||
        ra.updated != rj.updated) {
      return Fail("step " + std::to_string(i) + ": the group of one reports other numbers");
    }
  }
  if (Weights(**alone) != Weights(**joined)) return Fail("the group of one has other weights");
  std::printf("ok: a group of one equals a trainer alone, bit for bit (6 steps, accumulation 2)\n");
  return 0;
}

constexpr int kSteps = 4;
constexpr int64_t kPerRank = 2, kT = 40;

int Rank(int world, int rank, const std::string& dir) {
  std::unique_ptr<Model> model = MakeModel();
  auto t = Trainer::Create(*model, Opts(1));
  if (!t.ok()) return Fail("trainer: " + t.status().ToString());
  const std::string id_path = dir + "/nccl.id";
  NcclId id{};
  if (rank == 0) {
    auto made = CreateNcclId();
    if (!made.ok()) return Fail(made.status().ToString());
    id = *made;
    if (!WriteNcclIdFile(id_path, id).ok()) return Fail("id file");
  } else {
    auto read = ReadNcclIdFile(id_path, 60000);
    if (!read.ok()) return Fail(read.status().ToString());
    id = *read;
  }
  DataParallelOptions o;
  o.world_size = world;
  o.rank = rank;
  o.nccl_id = id.data();
  absl::Status s = (*t)->JoinDataParallel(o);
  if (!s.ok()) return Fail("join: " + s.ToString());
  std::ofstream losses(dir + "/loss." + std::to_string(rank));
  for (int i = 0; i < kSteps; ++i) {
    std::vector<int32_t> all = Tokens(i, world * kPerRank, kT);
    StepResult r;
    s = (*t)->Step(Batch{all.data() + rank * kPerRank * kT, kPerRank, kT, nullptr}, &r);
    if (!s.ok()) return Fail("step: " + s.ToString());
    losses.precision(17);
    losses << r.loss << "\n";
  }
  WriteFloats(dir + "/w." + std::to_string(rank), Weights(**t));
  return 0;
}

int Reference(int world, const std::string& dir) {
  std::unique_ptr<Model> model = MakeModel();
  auto t = Trainer::Create(*model, Opts(1));
  if (!t.ok()) return Fail("trainer");
  std::ofstream losses(dir + "/loss.ref");
  losses.precision(17);
  for (int i = 0; i < kSteps; ++i) {
    std::vector<int32_t> all = Tokens(i, world * kPerRank, kT);
    StepResult r;
    if (!(*t)->Step(Batch{all.data(), world * kPerRank, kT, nullptr}, &r).ok()) return Fail("step");
    losses << r.loss << "\n";
  }
  WriteFloats(dir + "/w.ref", Weights(**t));
  WriteFloats(dir + "/w.init", Flat(*model));
  return 0;
}

int GroupEqualsOneTrainer(int world) {
  char tmpl[] = "/tmp/mm_dp_XXXXXX";
  const char* made = mkdtemp(tmpl);
  if (made == nullptr) return Fail("mkdtemp");
  const std::string dir = made;
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    const pid_t pid = fork();
    if (pid == 0) _exit(Rank(world, r, dir));
    pids.push_back(pid);
  }
  // A rank that dies before joining leaves the others waiting in NCCL's
  // init for ever: after 5 minutes every rank still running is killed.
  int failed = 0;
  size_t done = 0;
  std::vector<bool> finished(pids.size(), false);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (done < pids.size()) {
    for (size_t r = 0; r < pids.size(); ++r) {
      if (finished[r]) continue;
      int status = 0;
      if (waitpid(pids[r], &status, WNOHANG) == pids[r]) {
        finished[r] = true;
        ++done;
        failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      }
    }
    if (done < pids.size() && std::chrono::steady_clock::now() > deadline) {
      for (size_t r = 0; r < pids.size(); ++r) {
        if (!finished[r]) kill(pids[r], SIGKILL);
      }
      return Fail("the group did not finish within 5 minutes (a rank died before joining?)");
    }
    usleep(10000);
  }
  if (failed) return Fail(std::to_string(failed) + " rank(s) failed");
  if (InChild([&] { return Reference(world, dir); }) != 0) return Fail("reference");
  const std::vector<float> ref = ReadFloats(dir + "/w.ref"), init = ReadFloats(dir + "/w.init");
  const std::vector<float> w0 = ReadFloats(dir + "/w.0");
  for (int r = 1; r < world; ++r) {
    if (ReadFloats(dir + "/w." + std::to_string(r)) != w0) {
      return Fail("rank " + std::to_string(r) + " holds other weights than rank 0");
    }
  }
  std::ifstream lr(dir + "/loss.ref"), l0(dir + "/loss.0");
  double worst_loss = 0.0;
  for (int i = 0; i < kSteps; ++i) {
    double a = 0, b = 0;
    lr >> a;
    l0 >> b;
    worst_loss = std::max(worst_loss, std::fabs(a - b) / std::fabs(a));
  }
  std::vector<float> dref(ref.size()), dgroup(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    dref[i] = ref[i] - init[i];
    dgroup[i] = w0[i] - init[i];
  }
  const double update_err = NormErr(dgroup, dref);
  std::printf("%d ranks x %lld sequences vs one trainer x %lld: loss within %.2e, update within "
              "%.2e, every rank the same bits\n",
              world, static_cast<long long>(kPerRank), static_cast<long long>(world * kPerRank),
              worst_loss, update_err);
  if (worst_loss > 1e-5) return Fail("the group's loss differs");
  if (update_err > 0.05) return Fail("the group's update differs");
  std::printf("ok: %d ranks follow one trainer\n", world);
  return 0;
}

}  // namespace
}  // namespace memmamba

int main() {
  using namespace memmamba;
  const int devices = InChild(CountDevices);
  if (devices == 0) {
    std::printf("cuda_data_parallel: skipped: no CUDA device (or no CUDA backend)\n");
    return kSkip;
  }
  std::printf("devices: %d\n", devices);
  const int one = InChild(GroupOfOne);
  if (one == kSkip) return kSkip;
  int failures = one != 0;
  if (devices >= 2) {
    for (int world = 2; world <= devices; world *= 2) failures += GroupEqualsOneTrainer(world) != 0;
  } else {
    std::printf("multi-GPU part skipped: this machine has one GPU\n");
  }
  return failures ? 1 : 0;
}
