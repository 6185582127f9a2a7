// fleetconf console passwd USER FILE: adds (or replaces) a user's scrypt line in the console's password file.
#include "commands.hpp"

#include "fleetconf/common/files.hpp"
#include "fleetconf/console/auth.hpp"

#include <termios.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>

namespace fleetconf::cli {

namespace {

struct PasswdArgs {
    std::string user;
    std::string file;
};

// One line from stdin; on a terminal, without echo, after `prompt`.
bool read_secret(const char* prompt, std::string& out) {
    const bool tty = ::isatty(STDIN_FILENO) != 0;
    termios old{};
    if (tty) {
        std::cerr << prompt << std::flush;
        ::tcgetattr(STDIN_FILENO, &old);
        termios quiet = old;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    const bool ok = static_cast<bool>(std::getline(std::cin, out));
    if (tty) {
        ::tcsetattr(STDIN_FILENO, TCSANOW, &old);
        std::cerr << "\n";
    }
    if (!out.empty() && out.back() == '\r') out.pop_back();
    return ok;
}

int passwd(const PasswdArgs& a) {
    if (a.user.empty() || a.user.size() > 64 || a.user.find_first_of(":\n\r\t ") != std::string::npos) {
        print_error("USER: 1 to 64 characters, no ':' or white space");
        return kExitInvalid;
    }
    std::string password, again;
    if (!read_secret("password: ", password)) {
        print_error("no password on stdin");
        return kExitInvalid;
    }
    if (::isatty(STDIN_FILENO) && (!read_secret("again: ", again) || again != password)) {
        print_error("the two passwords differ; nothing written");
        return kExitInvalid;
    }
    if (password.size() < 8 || password.size() > 1024) {
        print_error("the password must have 8 to 1024 characters");
        return kExitInvalid;
    }
    try {
        std::string text;
        if (std::filesystem::exists(a.file)) {
            if (auto err = common::read_file_limited(a.file, 1 << 20, text)) throw std::runtime_error(a.file + ": " + *err);
            (void)console::PasswordFile::parse(text);  // refuse to rewrite a file that is not a password file
        }
        const auto updated = console::PasswordFile::with_line(text, console::hash_password_line(a.user, password));
        common::write_file_atomic(a.file, std::span(reinterpret_cast<const std::uint8_t*>(updated.data()), updated.size()), 0600);
        (void)console::PasswordFile::load(a.file);
    } catch (const std::exception& e) {
        print_error(e.what());
        return kExitFailure;
    }
    std::cerr << "fleetconf: " << a.user << " can log in to the console (scrypt hash in " << a.file
              << "); a running server reads the file at the next start or reload\n";
    return kExitOk;
}

}  // namespace

void add_console_commands(CLI::App& app, Action& action) {
    auto* c = app.add_subcommand("console", "The operator console's password file (services.console; docs/console.md)");
    c->require_subcommand(1);
    auto a = std::make_shared<PasswdArgs>();
    auto* p = c->add_subcommand("passwd",
                                "Add or replace USER in a console password file (scrypt, mode 0600); the password is read "
                                "from stdin (asked twice, without echo, on a terminal)");
    p->add_option("USER", a->user, "Login name")->required();
    p->add_option("FILE", a->file, "Password file (services.console.password_file)")->required();
    p->callback([&action, a] { action = [a] { return passwd(*a); }; });
}

}  // namespace fleetconf::cli
