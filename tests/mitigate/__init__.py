"""`somactl mitigate` end to end. Where each reliability case that concerns an action is tested
(shared/reference/reliability-cases.md):

 1, 2  test_consent_audit.py::test_cases_1_2_no_terminal_is_never_consent
 3     test_consent_audit.py::test_case3_anything_but_yes_at_a_terminal_aborts (pty)
 4     test_consent_audit.py::test_case4_json_output_without_yes_is_refused_with_a_json_error
 5     test_rollback.py::test_case5_server_dry_run_...; test_workloads.py::test_server_dry_run_...
 6     test_rollback.py::test_case6_missing_revision_is_refused_like_kubectl
 7     test_rollback.py::test_case7_paused_deployment_is_refused (rollback and restart)
 8     test_rollback.py::test_case8_another_actor_edits_between_plan_and_consent (pty)
 9     test_rollback.py::test_case9_* (lossy proxy) and test_rerun_is_already_at_target_...
 10    test_workloads.py::test_case10_second_restart_within_the_same_second_is_refused
 11    test_workloads.py::test_case11_hpa_will_override_refused_unless_override
 12    test_workloads.py::test_case12_bad_replicas_are_usage_errors_without_a_network_call
 13    test_workloads.py::test_case13_replicas_changed_between_plan_and_consent (pty)
 14    test_workloads.py::test_case14_max_below_min_is_a_usage_error_without_a_network_call
 15    test_workloads.py::test_case15_existing_hpa_is_shown_and_needs_replace
 16    test_kill_queries.py::test_case16_role_without_pg_read_all_stats_...
 17    test_kill_queries.py::test_case17_* (plan exclusions; cancel then terminate)
 18    test_kill_queries.py::test_case18_reused_pid_is_never_signalled
 19    test_kill_queries.py::test_case19_target_already_gone_is_skipped_not_an_error
 21    test_kill_queries.py::test_case21_password_never_in_output_logs_or_journal
 22    test_redis_flush.py::test_case22_* (NOPERM on FLUSHALL; ACL DRYRUN pre-flight)
 23    test_redis_flush.py::test_case23_plan_shows_what_is_lost_and_only_the_typed_name_flushes
 24    test_redis_flush.py::test_case24_a_replica_is_refused
 25    test_circuit_breaker.py::test_case25_one_bounded_retry_honouring_retry_after
 26    test_circuit_breaker.py::test_case26_503_forever_gives_up_after_3_attempts_...
 32    test_consent_audit.py::test_case32_* (ENOSPC; unwritable state dir)
 33    test_consent_audit.py::test_case33_killed_between_intent_and_result (SIGKILL)
"""
