from django.urls import path

from . import jobs_api

urlpatterns = [
    path("node/jobs", jobs_api.NodeJobsView.as_view(), name="node-jobs"),
    path("node/jobs/<int:job_id>/commit", jobs_api.JobCommitView.as_view(), name="node-job-commit"),
    path("node/jobs/<int:job_id>/reveal", jobs_api.JobRevealView.as_view(), name="node-job-reveal"),
    path(
        "node/jobs/<int:job_id>/decline", jobs_api.JobDeclineView.as_view(), name="node-job-decline"
    ),
]
