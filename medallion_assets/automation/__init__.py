"""What runs the graph without a person: the job, the landing sensor, the schedule, failure
alerts."""
