// The pack cache: built packs by PackJob key within a byte budget, one build per key at a time.
#include "host.hpp"

namespace fleetconf::gitconf {

// ---- the pack cache --------------------------------------------------------------------------------

std::shared_ptr<const PackResult> PackCache::get_or_build(const std::string& key, const std::function<PackResult()>& build, bool& hit) {
    std::unique_lock lock(m_);
    if (auto it = entries_.find(key); it != entries_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second.lru);
        ++hits_;
        hit = true;
        return it->second.pack;
    }
    if (auto it = building_.find(key); it != building_.end()) {
        auto f = it->second;
        lock.unlock();
        ++hits_;
        hit = true;
        return f.get();  // the builder is already running on another pool thread
    }
    std::promise<std::shared_ptr<const PackResult>> promise;
    building_.emplace(key, promise.get_future().share());
    lock.unlock();
    ++misses_;
    hit = false;
    std::shared_ptr<const PackResult> result;
    try {
        result = std::make_shared<const PackResult>(build());
    } catch (...) {
        lock.lock();
        building_.erase(key);
        lock.unlock();
        promise.set_exception(std::current_exception());
        throw;
    }
    lock.lock();
    building_.erase(key);
    const auto size = result->data.size() + key.size();
    if (limit_ > 0 && size <= limit_ / 4) {
        lru_.push_front(key);
        entries_.emplace(key, Entry{result, lru_.begin()});
        bytes_ += size;
        while (bytes_ > limit_ && !lru_.empty()) {
            auto victim = entries_.find(lru_.back());
            bytes_ -= victim->second.pack->data.size() + victim->first.size();
            entries_.erase(victim);
            lru_.pop_back();
        }
    }
    lock.unlock();
    promise.set_value(result);
    return result;
}

std::size_t PackCache::bytes() const {
    std::lock_guard lock(m_);
    return bytes_;
}

}  // namespace fleetconf::gitconf
