# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ocusers_global_optspecs
    string join \n v/verbose h/help V/version
end

function __fish_ocusers_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ocusers_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ocusers_using_subcommand
    set -l cmd (__fish_ocusers_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ocusers -n "__fish_ocusers_needs_command" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ocusers -n "__fish_ocusers_needs_command" -s V -l version -d 'Print version'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "add" -d 'Create a tenant and start its gateway: user, state, config, token, port block, unit'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "remove" -d 'Stop a tenant\'s gateway and remove the tenant (state archived unless --purge)'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "list" -d 'One line per tenant: state, readiness, port, tier, memory, uptime'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "status" -d 'Details of one tenant or all, read from systemd and the gateway'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "start" -d 'Start tenants\' gateways and wait until they are ready (like `systemctl start openclaw@NAME`)'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "stop" -d 'Stop tenants\' gateways (like `systemctl stop openclaw@NAME`)'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "restart" -d 'Restart tenants\' gateways and wait until they are ready'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "runtime" -d 'Install and list OpenClaw runtimes (Node + the openclaw package)'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "secret" -d 'A tenant\'s secrets (provider keys): set from stdin or a file, unset, list names'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "token" -d 'The tenant\'s gateway token'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "exec" -d 'Run the tenant\'s own OpenClaw CLI as the tenant, in its gateway\'s /tmp and sandbox'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "logs" -d 'The tenant\'s journal (journalctl -u openclaw@NAME)'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "backup" -d 'Archive tenants\' state and registry entry (consistent while running); `backup verify FILE` checks one'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "restore" -d 'Recreate a tenant from a backup, on this or a fresh host'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "upgrade" -d 'Move tenants to another OpenClaw runtime, N at a time, each back if it is not ready'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "rollback" -d 'Move the tenants of the last upgrade back to the runtime they came from'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "doctor" -d 'Check the host and every tenant; each problem with its fix'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "repair" -d 'Reconcile tenants whose files, user, unit and registry entry disagree'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -l tier -d 'Resource tier (light, standard, heavy, or one of /etc/ocusers/tiers)' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -l port -d 'Gateway port (first of the tenant\'s block); allocated from the pool if left out' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -l no-start -d 'Create and enable the tenant but do not start its gateway'
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -l dry-run -d 'Print the plan and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand remove" -l purge -d 'Delete the tenant\'s state instead of archiving it'
complete -c ocusers -n "__fish_ocusers_using_subcommand remove" -l dry-run -d 'Print the plan and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand remove" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand remove" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand list" -l json -d 'Print JSON (shape documented in README.md, "Output")'
complete -c ocusers -n "__fish_ocusers_using_subcommand list" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand list" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand status" -l json -d 'Print JSON (shape documented in README.md, "Output")'
complete -c ocusers -n "__fish_ocusers_using_subcommand status" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand status" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand start" -l all -d 'Every tenant'
complete -c ocusers -n "__fish_ocusers_using_subcommand start" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand start" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand stop" -l all -d 'Every tenant'
complete -c ocusers -n "__fish_ocusers_using_subcommand stop" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand stop" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand restart" -l all -d 'Every tenant'
complete -c ocusers -n "__fish_ocusers_using_subcommand restart" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand restart" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and not __fish_seen_subcommand_from install prune list help" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and not __fish_seen_subcommand_from install prune list help" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and not __fish_seen_subcommand_from install prune list help" -f -a "install" -d 'Install Node and OpenClaw from the npm registry into a shared, read-only prefix and make it the default for new tenants'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and not __fish_seen_subcommand_from install prune list help" -f -a "prune" -d 'Delete installed runtimes that no tenant runs, that are not the default and that `rollback` does not need'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and not __fish_seen_subcommand_from install prune list help" -f -a "list" -d 'Installed runtimes, the default, and which tenants use each'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and not __fish_seen_subcommand_from install prune list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from install" -l version -d 'OpenClaw version (default: the registry\'s latest)' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from install" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from prune" -l dry-run -d 'Print what would be deleted and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from prune" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from list" -l json -d 'Print JSON (shape documented in README.md, "Output")'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from help" -f -a "install" -d 'Install Node and OpenClaw from the npm registry into a shared, read-only prefix and make it the default for new tenants'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Delete installed runtimes that no tenant runs, that are not the default and that `rollback` does not need'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from help" -f -a "list" -d 'Installed runtimes, the default, and which tenants use each'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and not __fish_seen_subcommand_from set unset list help" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and not __fish_seen_subcommand_from set unset list help" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and not __fish_seen_subcommand_from set unset list help" -f -a "set" -d 'Set a secret (value from stdin, or --file); restart to apply (or --restart)'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and not __fish_seen_subcommand_from set unset list help" -f -a "unset" -d 'Remove a secret; restart to apply (or --restart)'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and not __fish_seen_subcommand_from set unset list help" -f -a "list" -d 'The names of a tenant\'s secrets (never the values)'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and not __fish_seen_subcommand_from set unset list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from set" -l file -d 'Read the value from this file instead of stdin' -r -F
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from set" -l restart -d 'Restart the gateway afterwards and wait until it is ready'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from set" -l dry-run -d 'Print the plan and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from set" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from unset" -l restart -d 'Restart the gateway afterwards and wait until it is ready'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from unset" -l dry-run -d 'Print the plan and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from unset" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from unset" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from list" -l json -d 'Print JSON: {"tenant": NAME, "keys": [...]}'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "set" -d 'Set a secret (value from stdin, or --file); restart to apply (or --restart)'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "unset" -d 'Remove a secret; restart to apply (or --restart)'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "list" -d 'The names of a tenant\'s secrets (never the values)'
complete -c ocusers -n "__fish_ocusers_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand token; and not __fish_seen_subcommand_from rotate help" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand token; and not __fish_seen_subcommand_from rotate help" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand token; and not __fish_seen_subcommand_from rotate help" -f -a "rotate" -d 'Issue a new gateway token and restart the gateway (clients need the new token)'
complete -c ocusers -n "__fish_ocusers_using_subcommand token; and not __fish_seen_subcommand_from rotate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand token; and __fish_seen_subcommand_from rotate" -l dry-run -d 'Print the plan and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand token; and __fish_seen_subcommand_from rotate" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand token; and __fish_seen_subcommand_from rotate" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "rotate" -d 'Issue a new gateway token and restart the gateway (clients need the new token)'
complete -c ocusers -n "__fish_ocusers_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand exec" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand exec" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand logs" -s n -l lines -d 'How many of the latest entries to show' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand logs" -s f -l follow -d 'Keep printing new entries'
complete -c ocusers -n "__fish_ocusers_using_subcommand logs" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand logs" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand backup; and not __fish_seen_subcommand_from verify help" -l out -d 'Directory for the archives (default /var/lib/ocusers/backups)' -r -F
complete -c ocusers -n "__fish_ocusers_using_subcommand backup; and not __fish_seen_subcommand_from verify help" -l all -d 'Every tenant, one archive each'
complete -c ocusers -n "__fish_ocusers_using_subcommand backup; and not __fish_seen_subcommand_from verify help" -l with-secrets -d 'Include the tenant\'s secrets file (gateway token, provider keys). Archives are 0600 root in any case'
complete -c ocusers -n "__fish_ocusers_using_subcommand backup; and not __fish_seen_subcommand_from verify help" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand backup; and not __fish_seen_subcommand_from verify help" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand backup; and not __fish_seen_subcommand_from verify help" -a "verify" -d 'Check every member of an archive against its manifest (SHA-256, size)'
complete -c ocusers -n "__fish_ocusers_using_subcommand backup; and not __fish_seen_subcommand_from verify help" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand backup; and __fish_seen_subcommand_from verify" -l json -d 'Print the manifest\'s summary as JSON'
complete -c ocusers -n "__fish_ocusers_using_subcommand backup; and __fish_seen_subcommand_from verify" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand backup; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check every member of an archive against its manifest (SHA-256, size)'
complete -c ocusers -n "__fish_ocusers_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand restore" -l as -d 'Restore under another tenant name' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand restore" -l keep-token -d 'Keep the archived gateway token (needs an archive made --with-secrets)'
complete -c ocusers -n "__fish_ocusers_using_subcommand restore" -l force -d 'Replace an existing tenant of that name (its current state is deleted)'
complete -c ocusers -n "__fish_ocusers_using_subcommand restore" -l dry-run -d 'Print the plan and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand restore" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand restore" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand upgrade" -l to -d 'OpenClaw version to move to (installed first if needed; default: the registry\'s latest)' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand upgrade" -l tenants -d 'Only these tenants (comma-separated); default: all' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand upgrade" -l parallel -d 'How many tenants to move (and so have down) at once' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand upgrade" -l timeout -d 'Seconds to wait for each gateway to be ready (default: [tenants] ready_timeout from ocusers.toml)' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand upgrade" -l dry-run -d 'Print what would move and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand upgrade" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand upgrade" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand rollback" -l timeout -d 'Seconds to wait for each gateway to be ready' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand rollback" -l dry-run -d 'Print what would move and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand rollback" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand rollback" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand doctor" -l json -d 'Print JSON (shape documented in README.md, "Output")'
complete -c ocusers -n "__fish_ocusers_using_subcommand doctor" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand repair" -l remove-orphans -d 'Also remove tenant leftovers without a registry entry (their state is archived)'
complete -c ocusers -n "__fish_ocusers_using_subcommand repair" -l dry-run -d 'Print the plans and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand repair" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand repair" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "add" -d 'Create a tenant and start its gateway: user, state, config, token, port block, unit'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "remove" -d 'Stop a tenant\'s gateway and remove the tenant (state archived unless --purge)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "list" -d 'One line per tenant: state, readiness, port, tier, memory, uptime'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "status" -d 'Details of one tenant or all, read from systemd and the gateway'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "start" -d 'Start tenants\' gateways and wait until they are ready (like `systemctl start openclaw@NAME`)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "stop" -d 'Stop tenants\' gateways (like `systemctl stop openclaw@NAME`)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "restart" -d 'Restart tenants\' gateways and wait until they are ready'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "runtime" -d 'Install and list OpenClaw runtimes (Node + the openclaw package)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "secret" -d 'A tenant\'s secrets (provider keys): set from stdin or a file, unset, list names'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "token" -d 'The tenant\'s gateway token'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "exec" -d 'Run the tenant\'s own OpenClaw CLI as the tenant, in its gateway\'s /tmp and sandbox'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "logs" -d 'The tenant\'s journal (journalctl -u openclaw@NAME)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "backup" -d 'Archive tenants\' state and registry entry (consistent while running); `backup verify FILE` checks one'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "restore" -d 'Recreate a tenant from a backup, on this or a fresh host'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "upgrade" -d 'Move tenants to another OpenClaw runtime, N at a time, each back if it is not ready'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "rollback" -d 'Move the tenants of the last upgrade back to the runtime they came from'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "doctor" -d 'Check the host and every tenant; each problem with its fix'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "repair" -d 'Reconcile tenants whose files, user, unit and registry entry disagree'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart runtime secret token exec logs backup restore upgrade rollback doctor repair help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and __fish_seen_subcommand_from runtime" -f -a "install" -d 'Install Node and OpenClaw from the npm registry into a shared, read-only prefix and make it the default for new tenants'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and __fish_seen_subcommand_from runtime" -f -a "prune" -d 'Delete installed runtimes that no tenant runs, that are not the default and that `rollback` does not need'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and __fish_seen_subcommand_from runtime" -f -a "list" -d 'Installed runtimes, the default, and which tenants use each'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and __fish_seen_subcommand_from secret" -f -a "set" -d 'Set a secret (value from stdin, or --file); restart to apply (or --restart)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and __fish_seen_subcommand_from secret" -f -a "unset" -d 'Remove a secret; restart to apply (or --restart)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and __fish_seen_subcommand_from secret" -f -a "list" -d 'The names of a tenant\'s secrets (never the values)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "rotate" -d 'Issue a new gateway token and restart the gateway (clients need the new token)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "verify" -d 'Check every member of an archive against its manifest (SHA-256, size)'
