#include "shmtimer/fifo_shim.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "shmtimer/clock.hpp"
#include "shmtimer/error.hpp"
#include "shmtimer/printable.hpp"
#include "fifo_senders.hpp"
#include "server_events.hpp"
#include "server_wakeup.hpp"
#include "slot_ops.hpp"

namespace shmtimer {

namespace {

// The reference removes whatever is at the path and makes a new FIFO. shmtimerd replaces
// only an old FIFO: deleting a regular file, or following a symlink, at a path someone
// else chose is how a watchdog gets turned against its user's files.
// `replace_old`: false when making the FIFO again after it was removed; a file that
// appeared there meanwhile (torch's server unlinks and then makes its own) is another
// server's, never replaced.
void make_fifo(const std::filesystem::path& path, mode_t mode, bool replace_old) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!replace_old)
      throw Error(ErrorCode::kUnsafeFile, "another file appeared at " + path.string() + " (another server's FIFO?)");
    if (!S_ISFIFO(st.st_mode))
      throw Error(ErrorCode::kUnsafeFile, "cannot create the FIFO " + path.string() + ": a " +
                                              (S_ISLNK(st.st_mode)   ? "symlink"
                                               : S_ISREG(st.st_mode) ? "regular file"
                                               : S_ISDIR(st.st_mode) ? "directory"
                                                                     : "non-FIFO file") +
                                              " is in the way; remove it or choose another path");
    if (st.st_uid != ::geteuid())
      throw Error(ErrorCode::kUnsafeFile,
                  "cannot reuse the FIFO " + path.string() + ": it belongs to uid " + std::to_string(st.st_uid));
    if (::unlink(path.c_str()) != 0) throw_errno("cannot remove the old FIFO " + path.string());
  }
  if (::mkfifo(path.c_str(), mode) != 0) throw_errno("cannot create the FIFO " + path.string());
}

// Opens the FIFO just made for reading, without following a symlink and without
// blocking, and checks on the descriptor that it is a FIFO of ours: whatever is swapped in
// at the path meanwhile is refused, never read, never chmod-ed.
int open_own_fifo(const std::filesystem::path& path, mode_t mode) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open the FIFO " + path.string());
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode) || st.st_uid != ::geteuid()) {
    ::close(fd);
    throw Error(ErrorCode::kUnsafeFile, "the FIFO " + path.string() + " was replaced while it was being opened");
  }
  // fchmod, on the descriptor: the umask cannot narrow the mode, and no path is followed.
  if (::fchmod(fd, mode) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    throw_errno("cannot set the mode of " + path.string());
  }
  return fd;
}

const char* describe(FifoRefusal refusal) {
  switch (refusal) {
    case FifoRefusal::kNotAWorker: return "not a worker process";
    case FifoRefusal::kNoProcess: return "no such process (or a thread id, not a process id)";
    case FifoRefusal::kOtherUser: return "it belongs to another user";
  }
  return "refused";
}

}  // namespace

FifoShim::FifoShim(std::shared_ptr<Table> table, std::filesystem::path path, EventCallback log_event,
                   FifoShimOptions options)
    : table_(std::move(table)),
      path_(std::move(path)),
      log_event_(std::move(log_event)),
      options_(options),
      lines_(make_line_assembler()),
      senders_(std::make_unique<detail::FifoSenders>(options_.any_uid)) {
  open_fifo(true);
  spdlog::info("serving the FileTimer protocol on FIFO {}", path_.string());
}

fifo::LineAssembler FifoShim::make_line_assembler() {
  return fifo::LineAssembler([this](std::string_view line) { on_line(line); },
                             [this](std::size_t bytes, std::string_view tail) {
                               stats_.count(fifo::ParseErrorReason::kLineTooLong);
                               spdlog::warn("FIFO {}: dropped a request line of {} bytes, longer than PIPE_BUF ({})",
                                            path_.string(), bytes, fifo::kMaxLineBytes);
                               recover(tail);
                             });
}

void FifoShim::open_fifo(bool replace_old) {
  make_fifo(path_, options_.mode, replace_old);
  // Non-blocking: the reference blocks here until the first client opens the FIFO; a
  // watchdog must not.
  read_fd_ = open_own_fifo(path_, options_.mode);
  struct stat st{};
  ::fstat(read_fd_, &st);  // succeeded in open_own_fifo
  inode_ = st.st_ino;
  dev_ = st.st_dev;
  // The writer end through /proc/self/fd: the very FIFO just checked, not the path again.
  keepalive_fd_ = ::open(("/proc/self/fd/" + std::to_string(read_fd_)).c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (keepalive_fd_ < 0) {
    const int err = errno;
    ::close(read_fd_);
    read_fd_ = -1;
    remove_fifo_if_ours();
    errno = err;
    throw_errno("cannot open the FIFO " + path_.string() + " for writing");
  }
  // A larger pipe absorbs bursts: PyTorch's client does not retry a full pipe, it raises
  // BlockingIOError and the request is lost. The kernel caps this at pipe-max-size.
  if (::fcntl(read_fd_, F_SETPIPE_SZ, options_.pipe_bytes) < 0)
    spdlog::debug("FIFO {}: could not enlarge the pipe: {}", path_.string(), std::strerror(errno));
}

// Torch's own FileTimerServer removes and re-creates its FIFO at start and removes it at
// stop; an operator may remove it too. Either way writers can no longer reach this
// server, and it would go on serving nothing. So the path is checked, at most every
// kPathCheckNs, once the FIFO is drained (what was written before a removal is read
// first): a removed FIFO is made again, unless a file appeared there meanwhile (torch's
// server unlinks, then makes its own); one replaced by another file (another server's,
// most likely) is left alone, never removed, and reported through lost().
void FifoShim::check_path(std::uint64_t now_ns) {
  if (lost_.load(std::memory_order_relaxed) || now_ns < next_path_check_ns_) return;
  next_path_check_ns_ = now_ns + kPathCheckNs;
  struct stat st{};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (S_ISFIFO(st.st_mode) && st.st_ino == inode_ && st.st_dev == dev_) return;
    lost_.store(true, std::memory_order_relaxed);
    spdlog::error(
        "the FIFO {} was replaced by another file ({}, uid {}): another server, such as torch's "
        "FileTimerServer, is serving that path now; requests written there no longer reach this server",
        path_.string(), S_ISFIFO(st.st_mode) ? "a FIFO" : "not a FIFO", st.st_uid);
    return;
  }
  if (errno != ENOENT) return;  // EACCES and the like: nothing known, check again later
  spdlog::error("the FIFO {} was removed (by torch's FileTimerServer, or by hand); creating it again", path_.string());
  // The new FIFO is opened while the old descriptors are still open, so it gets other
  // numbers: the source watcher tells a changed source by its descriptor's number.
  const int old_read = read_fd_, old_keepalive = keepalive_fd_;
  try {
    open_fifo(false);
    recreations_.fetch_add(1, std::memory_order_relaxed);
  } catch (const Error& e) {
    read_fd_ = keepalive_fd_ = -1;
    lost_.store(true, std::memory_order_relaxed);
    spdlog::error("cannot create the FIFO {} again: {}", path_.string(), e.what());
  }
  ::close(old_keepalive);
  ::close(old_read);
}

FifoShim::~FifoShim() {
  if (keepalive_fd_ >= 0) ::close(keepalive_fd_);
  if (read_fd_ >= 0) ::close(read_fd_);
  remove_fifo_if_ours();  // as the reference removes its FIFO on stop
}

void FifoShim::remove_fifo_if_ours() const {
  struct stat st{};
  if (::lstat(path_.c_str(), &st) == 0 && S_ISFIFO(st.st_mode) && st.st_ino == inode_ && st.st_dev == dev_)
    ::unlink(path_.c_str());
}

DrainResult FifoShim::drain() {
  const std::lock_guard lock(mutex_);
  const std::uint64_t before = request_count();
  const std::uint64_t started_ns = monotonic_now_ns();
  table_full_ = false;  // a full table is searched at most once a round (slots may have been freed since)
  retry_deferred();
  if (read_fd_ < 0) return {0, false};  // lost, and could not be made again
  std::size_t read_bytes = 0;
  char buf[16384];  // about 150 requests: the time budget is checked between chunks
  while (read_bytes < options_.max_bytes_per_drain &&
         monotonic_now_ns() - started_ns < static_cast<std::uint64_t>(options_.max_drain_time.count())) {
    const ssize_t n = ::read(read_fd_, buf, sizeof buf);
    if (n > 0) {
      read_bytes += static_cast<std::size_t>(n);
      senders_->forget_exited();  // before applying: see fifo_senders.hpp
      lines_.feed(std::string_view(buf, static_cast<std::size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) spdlog::error("reading the FIFO {}: {}", path_.string(), std::strerror(errno));
    check_path(monotonic_now_ns());  // drained: a FIFO made again now loses nothing written before
    return {request_count() - before, false};
  }
  return {request_count() - before, true};
}

void FifoShim::register_requests(const std::vector<fifo::Request>& requests) {
  std::vector<std::string> lines;
  lines.reserve(requests.size());
  for (const auto& request : requests) lines.push_back(fifo::format_request(request));
  const std::lock_guard lock(mutex_);
  table_full_ = false;
  senders_->forget_exited();
  retry_deferred();
  // An assembler of their own: the FIFO's may hold the start of a line the next read ends.
  auto assembler = make_line_assembler();
  for (const auto& line : lines) assembler.feed(line);
  // From another thread than the server's: a deadline before its planned wake-up wakes it,
  // as a table client's arm does.
  for (const auto& request : requests)
    if (!request.is_release())
      detail::wake_server_for(table_->header(), to_table_ns(deadline_from_epoch_seconds(request.expiration_time)));
}

std::uint64_t FifoShim::disarm_timers_of(const std::set<pid_t>& pids) {
  const std::lock_guard lock(mutex_);
  std::uint64_t cleared = 0;
  detail::for_each_occupied(*table_, [&](std::uint64_t index) {
    detail::SlotSnapshot snap;
    if (detail::read_slot(*table_, index, snap) != detail::ReadResult::kReady || !pids.contains(snap.pid)) return;
    if (detail::disarm_if_unchanged(*table_, index, snap.armed)) {
      ++cleared;
      emit_event(log_event_, "clear timer", [&] { return event_of(snap); });
    }
    // Only the shim writes FIFO slots, so it gives them back at once, as on a release.
    if (snap.origin == layout::Origin::kFifo) detail::free_slot(*table_, index, snap.control);
  });
  return cleared;
}

void FifoShim::on_line(std::string_view line) {
  auto parsed = fifo::parse_request(line);
  if (auto* problem = std::get_if<fifo::ParseError>(&parsed)) {
    stats_.count(problem->reason);
    spdlog::warn("FIFO {}: skipped a malformed request ({}): {:.200}", path_.string(), printable(problem->message),
                 printable(line));
    recover(line);
    return;
  }
  apply(std::get<fifo::Request>(parsed));
}

// A neighbour's whole request after a malformed fragment is applied, not lost with it.
void FifoShim::recover(std::string_view line) {
  if (auto request = fifo::recover_request(line)) {
    stats_.recovered.fetch_add(1, std::memory_order_relaxed);
    apply(*request);
  }
}

void FifoShim::apply(const fifo::Request& request) {
  stats_.requests.fetch_add(1, std::memory_order_relaxed);
  table_->header().fifo_requests.fetch_add(1, std::memory_order_relaxed);  // statistics
  act(request);
}

void FifoShim::retry_deferred() {
  if (deferred_.empty()) return;
  std::deque<fifo::Request> waiting;
  waiting.swap(deferred_);
  for (const auto& request : waiting) act(request);  // in order; what still cannot be judged waits again
  if (deferred_.empty() && unknown_in_episode_ > 0) {
    spdlog::warn("FIFO {}: every deferred request is now applied, after {} look(s) at senders that could not tell",
                 path_.string(), unknown_in_episode_);
    unknown_in_episode_ = 0;
  }
}

void FifoShim::act(const fifo::Request& request) {
  const auto defer = [&] {
    if (deferred_.size() < kMaxDeferred) return deferred_.push_back(request);
    spdlog::error(
        "FIFO {}: request from pid {} (scope '{}') dropped: {} requests already wait for their senders to "
        "be looked at",
        path_.string(), request.pid, printable(request.scope_id), kMaxDeferred);
  };
  if (std::any_of(deferred_.begin(), deferred_.end(), [&](const fifo::Request& r) { return r.pid == request.pid; }))
    return defer();  // behind its sender's earlier requests
  // The timer is keyed by the process's identity at receipt, as a table client records
  // its own. A request the server would refuse to act on gets no slot at all, so refused
  // requests can never fill the table.
  const auto verdict = senders_->judge(request.pid);
  if (verdict.unknown_error != 0) {
    detail::count_liveness_unknown(*table_, verdict.unknown_error);
    if (unknown_in_episode_++ == 0)
      spdlog::error(
          "FIFO {}: could not look at pid {}, the sender of a request (scope '{}'): {}. Its requests wait "
          "and are applied once it can be looked at",
          path_.string(), request.pid, printable(request.scope_id), std::strerror(verdict.unknown_error));
    return defer();
  }
  if (verdict.refusal) {
    stats_.count(*verdict.refusal);
    spdlog::info("FIFO request from pid {} (scope '{}') refused: {}", request.pid, printable(request.scope_id),
                 describe(*verdict.refusal));
    return;
  }
  if (request.is_release())
    release(request, verdict.identity);
  else
    acquire(request, verdict.identity);
}

void FifoShim::acquire(const fifo::Request& request, std::uint64_t identity) {
  const detail::ScopeKey key(request.scope_id);
  layout::Ownership owner{0, identity};
  std::uint64_t index = detail::find_slot(*table_, request.pid, identity, layout::Origin::kFifo, key, &owner.control);
  if (index == detail::kNoSlot) {
    // Fail fast on a table found full this round: searching every slot again for each
    // request of a flood would stall the round (and so every reap) for seconds.
    const auto claimed =
        table_full_ ? detail::Claimed{}
                    : detail::insert_slot(*table_, {request.pid, identity, request.signal, layout::Origin::kFifo}, key);
    table_full_ = !claimed.ok();
    if (!claimed.ok()) {
      table_->header().full_failures.fetch_add(1, std::memory_order_relaxed);
      spdlog::error("FIFO request from pid {} (scope '{}') dropped: the table is full ({} slots)", request.pid,
                    printable(request.scope_id), table_->capacity());
      return;
    }
    index = claimed.index;
    owner.control = claimed.control;
  }
  // The shim is the only writer of its slots, and frees them only itself or once the
  // process is gone, so the arm lands; if it did not, the request is lost and said so.
  if (!detail::arm_slot(table_->slot(index), owner, to_table_ns(deadline_from_epoch_seconds(request.expiration_time)),
                        request.signal)) {
    spdlog::error("FIFO request from pid {} (scope '{}') dropped: its slot was freed meanwhile", request.pid,
                  printable(request.scope_id));
    return;
  }
  emit("set timer", request, index);
}

void FifoShim::release(const fifo::Request& request, std::uint64_t identity) {
  const detail::ScopeKey key(request.scope_id);
  std::uint64_t control = 0;
  const std::uint64_t index = detail::find_slot(*table_, request.pid, identity, layout::Origin::kFifo, key, &control);
  if (index == detail::kNoSlot) return;  // releasing an unknown scope does nothing
  auto& slot = table_->slot(index);
  detail::disarm_slot(slot, {control, identity});
  // Only the shim writes FIFO-origin slots, so it can give them back at once.
  if (slot.origin.load(std::memory_order_relaxed) == static_cast<std::uint32_t>(layout::Origin::kFifo))
    detail::free_slot(*table_, index, control);
  emit("clear timer", request, index);
}

void FifoShim::emit(std::string_view name, const fifo::Request& request, std::uint64_t slot) const {
  // The request was applied; a failing log must not undo the drain: emit_event catches.
  emit_event(log_event_, name, [&] {
    TimerEvent event;
    event.pid = request.pid;
    event.scope = request.scope_id;
    event.deadline_ns = request.is_release() ? 0 : to_table_ns(deadline_from_epoch_seconds(request.expiration_time));
    event.signal = request.signal;
    event.slot = slot;
    event.origin = layout::Origin::kFifo;
    return event;
  });
}

}  // namespace shmtimer
