-- Notebook chart "Membership applications": per outcome, and per rejection reason of the unsuccessful
-- ones (an application that broke several rules counts under each of its reasons).
SELECT outcome, coalesce(rejection_reason, 'accepted') AS reason, applications, applications_in_outcome
FROM bi.membership_applications_by_outcome
ORDER BY outcome, applications DESC, reason
