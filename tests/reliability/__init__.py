"""Where each reliability case of shared/reference/reliability-cases.md is tested, across the
whole suite (this package adds the fault matrix and the cases no earlier test covered).

 1, 2  mitigate/test_consent_audit.py::test_cases_1_2_no_terminal_is_never_consent;
       cli/test_consent.py::test_piped_input_or_no_terminal_is_never_consent;
       property/test_every_command.py::test_piped_yes_is_never_consent (every mutating command)
 3     mitigate/test_consent_audit.py::test_case3_anything_but_yes_at_a_terminal_aborts (pty);
       cli/test_consent.py::test_anything_but_yes_aborts
 4     mitigate/test_consent_audit.py::
         test_case4_json_output_without_yes_is_refused_with_a_json_error
 5     mitigate/test_rollback.py::test_case5_server_dry_run_sends_dryrun_all_and_changes_nothing;
       mitigate/test_workloads.py (server dry runs of scale/restart/autoscale)
 6     mitigate/test_rollback.py::test_case6_missing_revision_is_refused_like_kubectl
 7     mitigate/test_rollback.py::test_case7_paused_deployment_is_refused
 8     mitigate/test_rollback.py::test_case8_another_actor_edits_between_plan_and_consent (pty)
 9     mitigate/test_rollback.py::test_case9_* (lossy proxy),
       ::test_rerun_is_already_at_target_never_a_ping_pong
 10    mitigate/test_workloads.py::test_case10_second_restart_within_the_same_second_is_refused
 11    mitigate/test_workloads.py::test_case11_hpa_will_override_refused_unless_override
 12    mitigate/test_workloads.py::test_case12_bad_replicas_are_usage_errors_without_a_network_call;
       property/test_every_command.py::test_random_arguments[mitigate scale] (a usage error
       never made an API call, whatever the value)
 13    mitigate/test_workloads.py::test_case13_replicas_changed_between_plan_and_consent (pty)
 14    mitigate/test_workloads.py::test_case14_max_below_min_is_a_usage_error_without_a_network_call
 15    mitigate/test_workloads.py::test_case15_existing_hpa_is_shown_and_needs_replace
 16    mitigate/test_kill_queries.py::test_case16_role_without_pg_read_all_stats_*;
       checks/test_postgres_checks.py::test_a_role_without_pg_read_all_stats_is_told_which_privilege
 17    mitigate/test_kill_queries.py::test_case17_* (plan exclusions; cancel then terminate)
 18    mitigate/test_kill_queries.py::test_case18_reused_pid_is_never_signalled
 19    mitigate/test_kill_queries.py::test_case19_target_already_gone_is_skipped_not_an_error
 20    reliability/test_cases.py::
         test_case20_db_pool_against_a_blackholed_postgres_fails_at_the_deadline
       (table, --debug, json; the lab's real password never printed);
       reliability/test_matrix.py::test_blackhole[postgres], ::test_reset[postgres];
       diagnose/test_deadline.py::test_db_pool_against_a_blackhole_is_exit_6_naming_the_backend
 21    mitigate/test_kill_queries.py::test_case21_password_never_in_output_logs_or_journal;
       diagnose/test_lab_scenarios.py::test_planted_secrets_never_reach_any_output;
       reliability/conftest.py (every run of this package is scanned for the lab's passwords);
       property/test_every_command.py (sentinel secrets, every command, every file written)
 22    mitigate/test_redis_flush.py::test_case22_* (NOPERM on FLUSHALL; ACL DRYRUN pre-flight)
 23    mitigate/test_redis_flush.py::
         test_case23_plan_shows_what_is_lost_and_only_the_typed_name_flushes
 24    mitigate/test_redis_flush.py::test_case24_a_replica_is_refused
 25    mitigate/test_circuit_breaker.py::test_case25_one_bounded_retry_honouring_retry_after;
       incident/test_http.py::test_429_with_retry_after_is_retried_once_for_idempotent_calls
 26    mitigate/test_circuit_breaker.py::test_case26_503_forever_gives_up_after_3_attempts_*;
       incident/test_http.py::test_bounded_attempts_with_backoff_on_5xx
 27    reliability/test_cases.py::test_case27_exhausted_github_limit_fails_fast_naming_the_reset;
       checks/test_tools_checks.py::test_an_exhausted_github_limit_names_its_reset_and_never_waits;
       diagnose/test_lab_scenarios.py::test_github_rate_limited
 28    reliability/test_cases.py::test_case28_secondary_limit_is_never_a_tight_loop (429 without
       headers, 403 secondary, 429 with retry-after; one request per command)
 29    incident/test_cli.py::test_case_29_pagerduty_429_then_202_is_exactly_one_alert
 30    incident/test_cli.py::test_case_30_pagerduty_400_is_not_retried_and_exits_9;
       incident/test_http.py::test_400_is_never_retried
 31    incident/test_cli.py::test_case_31_slack_404_names_status_and_never_the_webhook_path
 32    mitigate/test_consent_audit.py::test_case32_* (ENOSPC; unwritable state dir);
       incident/test_audit.py::test_enospc_refuses_before_the_action_runs,
       ::test_read_only_state_dir_refuses; incident/test_cli.py::test_disk_full_journal_exits_8_*
 33    mitigate/test_consent_audit.py::test_case33_killed_between_intent_and_result (SIGKILL);
       incident/test_audit.py::test_dangling_intent_is_unknown_with_its_event_id,
       ::test_truncated_last_line_is_reported_never_accepted
 34    reliability/test_cases.py::
         test_case34_dripping_kubernetes_api_the_deadline_fires_and_the_rest_is_printed;
       diagnose/test_deadline.py::test_kubernetes_api_stuck[drip];
       diagnose/test_lab_scenarios.py::test_a_dripping_kubernetes_api_ends_at_the_deadline;
       incident/test_http.py::test_slow_drip_is_stopped_by_the_outer_deadline
 35    reliability/test_cases.py::test_case35_kubernetes_down_is_a_degraded_report_within_budget;
       reliability/test_matrix.py::test_blackhole[kube], ::test_reset[kube];
       diagnose/test_cli.py::test_library_retry_defaults_do_not_spend_the_budget
 36    property/test_every_command.py (hypothesis over every command of the Typer tree:
       documented exit codes, no traceback, no write without consent, usage errors make no call,
       only DNS-1123 names reach the API server, no secret printed or written)

The fault matrix (reliability/test_matrix.py): a fault proxy in front of each backend (Kubernetes
API, Postgres, Redis, Prometheus, tools API, GitHub), each of blackhole / reset / latency against
`diagnose` and that backend's single-check commands (logs, rollout history, db activity, db pool,
redis info, status, tools health, tools rate-limit github): message, exit code, time bound, and
nothing changed or lost (the API server's request log, planted Postgres sessions, Redis keys).
"""
