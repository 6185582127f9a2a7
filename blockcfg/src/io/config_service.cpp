// One device's editor: the view, the write queue and the writer thread (config_service.hpp).
#include "fleetconf/blockcfg/config_service.hpp"

#include <algorithm>
#include <condition_variable>
#include <future>

namespace fleetconf::blockcfg {

std::uint64_t now_ns() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

ConfigService::ConfigService(std::string name, std::unique_ptr<Device> dev, Store store, std::shared_ptr<spdlog::logger> log)
    : name_(std::move(name)), dev_(std::move(dev)), store_(std::move(store)), log_(std::move(log)) {
    auto c = from_payload(store_.payload());
    if (auto* f = std::get_if<Failure>(&c))
        throw std::runtime_error(name_ + ": generation " + std::to_string(store_.generation()) + ": " + f->message);
    view_ = {std::make_shared<const Config>(std::get<Config>(std::move(c))), store_.current()};
    thread_ = std::thread([this] { writer(); });
}

ConfigService::~ConfigService() {
    {
        std::lock_guard lock(queue_mutex_);
        stopping_ = true;
    }
    queue_cv_.notify_all();
    thread_.join();
    std::lock_guard lock(store_mutex_);
    if (store_.flush()) log_->warn("{}: final flush failed; the second header copy may be one generation behind", name_);
}

ConfigService::Snapshot ConfigService::snapshot() const {
    std::lock_guard lock(view_mutex_);
    return view_;
}

std::vector<GenerationInfo> ConfigService::history() const {
    std::lock_guard lock(store_mutex_);
    return store_.history();
}

std::vector<ChangeNote> ConfigService::change_of(std::uint64_t generation) const {
    std::lock_guard lock(store_mutex_);
    const auto p = store_.read_generation(generation);
    return p ? blockcfg::change_of(*p) : std::vector<ChangeNote>{};
}

void ConfigService::submit(ChangeRequest req, std::string who, std::function<void(Outcome)> done) {
    {
        std::lock_guard lock(queue_mutex_);
        queue_.push_back({std::move(req), std::move(who), std::move(done)});
    }
    queue_cv_.notify_one();
}

Outcome ConfigService::change(ChangeRequest req, std::string who) {
    std::mutex m;
    std::condition_variable cv;
    std::optional<Outcome> result;
    submit(std::move(req), std::move(who), [&](Outcome o) {
        std::lock_guard lock(m);
        result = std::move(o);
        cv.notify_one();
    });
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return result.has_value(); });
    return *result;
}

ConfigService::Stats ConfigService::stats() const {
    std::lock_guard lock(view_mutex_);
    return stats_;
}

void ConfigService::set_observer(Observer o) {
    std::lock_guard lock(observer_mutex_);
    observer_ = std::move(o);
}

void ConfigService::writer() {
    constexpr std::size_t kMaxBatch = 256;
    while (true) {
        std::vector<Pending> batch;
        {
            std::unique_lock lock(queue_mutex_);
            queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;  // stopping, and nothing left to do
            while (!queue_.empty() && batch.size() < kMaxBatch) {
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
        }
        const Snapshot before = snapshot();
        const std::uint64_t gen = before.gen.generation;
        std::vector<const ChangeRequest*> requests;
        for (const auto& p : batch) requests.push_back(&p.req);
        auto decided = apply_batch(*before.config, gen, requests, [&](std::uint64_t g) {
            std::lock_guard lock(store_mutex_);
            return store_.read_generation(g);
        });
        Config work = std::move(decided.config);
        const bool changed = decided.changed;
        std::vector<Outcome> outcomes(batch.size());
        std::vector<bool> accepted(batch.size(), false);
        for (std::size_t i = 0; i < batch.size(); ++i) {
            outcomes[i].previous_generation = outcomes[i].generation = gen;
            if (const auto& f = decided.refused[i]) {
                outcomes[i].ec = f->code;
                outcomes[i].message = f->message;
            } else {
                accepted[i] = true;
            }
        }
        if (changed) {
            std::error_code ec;
            GenerationInfo info;
            std::vector<ChangeNote> notes;
            for (std::size_t i = 0; i < batch.size(); ++i)
                if (accepted[i]) notes.push_back({batch[i].who, describe(batch[i].req)});
            const std::string payload = to_payload(work, notes);
            {
                std::lock_guard lock(store_mutex_);
                ec = store_.commit(payload, now_ns());
                info = store_.current();
            }
            if (ec) {
                {
                    std::lock_guard lock(view_mutex_);
                    ++stats_.commit_failures;
                    stats_.last_error = ec.message();
                }
                log_->error("{}: commit of {} change(s) failed: {}; the configuration stays at generation {}", name_,
                            std::count(accepted.begin(), accepted.end(), true), ec.message(), gen);
                for (std::size_t i = 0; i < batch.size(); ++i)
                    if (accepted[i]) {
                        outcomes[i].ec = ec;
                        outcomes[i].message = "the device failed to store the change: " + ec.message();
                    }
            } else {
                // Durable: only now does the view (and so every reader) see it.
                {
                    std::lock_guard lock(view_mutex_);
                    view_ = {std::make_shared<const Config>(std::move(work)), info};
                    ++stats_.commits;
                    stats_.applied += static_cast<std::uint64_t>(std::count(accepted.begin(), accepted.end(), true));
                    stats_.last_error.clear();
                }
                Observer observe;
                {
                    std::lock_guard lock(observer_mutex_);
                    observe = observer_;
                }
                const auto now_config = snapshot().config;
                for (std::size_t i = 0; i < batch.size(); ++i)
                    if (accepted[i]) {
                        outcomes[i].generation = info.generation;
                        log_->info("{}: {} by {}: generation {} -> {}", name_, batch[i].req.name, batch[i].who, gen, info.generation);
                        if (observe) {
                            try {
                                outcomes[i].warnings = observe(batch[i].req, *now_config, info.generation);
                            } catch (const std::exception& e) {
                                log_->error("{}: observer: {}", name_, e.what());
                            }
                            for (const auto& w : outcomes[i].warnings) log_->warn("{}: {}", name_, w);
                        }
                    }
            }
        }
        {
            std::lock_guard lock(view_mutex_);
            for (const auto& o : outcomes) stats_.refused += o.ec ? 1 : 0;
        }
        for (std::size_t i = 0; i < batch.size(); ++i) {
            if (!accepted[i] && outcomes[i].ec)
                log_->info("{}: {} by {} refused: {} {}", name_, batch[i].req.name, batch[i].who,
                           code_name(static_cast<errc>(outcomes[i].ec.value())), outcomes[i].message);
            if (batch[i].done) batch[i].done(std::move(outcomes[i]));
        }
    }
}

}  // namespace fleetconf::blockcfg
